"""Plane geometry for lines and zones, in image coordinates (x right, y down), exact on the boundary.

The primitives (sides of a line, segment intersection) are vidpipe.geometry's, which the analytics
configuration validates zones with; here what only the analytics engine needs: where an object stands
and whether it is inside a zone.
"""

from __future__ import annotations

from collections.abc import Sequence

from vidpipe.geometry import Point, on_segment, segments_intersect, side

__all__ = ["Box", "Point", "anchor", "inside_polygon", "scale", "segments_intersect", "side"]

Box = tuple[float, float, float, float]


def anchor(box: Box) -> Point:
    """Where an object stands: the bottom centre of its box (x1, y1, x2, y2; y grows downwards), which
    is where a car or a person touches the ground, so a line drawn on the road counts what drives over
    it, not what passes in front of it higher up in the picture."""
    return ((box[0] + box[2]) / 2.0, box[3])


def inside_polygon(p: Point, polygon: Sequence[Point]) -> bool:
    """p is inside the simple polygon or on its boundary (even-odd rule otherwise)."""
    count = len(polygon)
    for i in range(count):
        a, b = polygon[i], polygon[(i + 1) % count]
        if side(a, b, p) == 0 and on_segment(a, b, p):
            return True
    inside = False
    for i in range(count):
        (x1, y1), (x2, y2) = polygon[i], polygon[(i + 1) % count]
        if (y1 > p[1]) != (y2 > p[1]):
            x_at = x1 + (p[1] - y1) * (x2 - x1) / (y2 - y1)
            if p[0] < x_at:
                inside = not inside
    return inside


def scale(point: Sequence[float], width: float, height: float) -> Point:
    """A normalized point (fractions of the frame) in pixels."""
    return (point[0] * width, point[1] * height)
