"""Plane geometry for lines and zones, in image coordinates (x right, y down), exact on the boundary."""

from __future__ import annotations

from collections.abc import Sequence

Point = tuple[float, float]
Box = tuple[float, float, float, float]


def anchor(box: Box) -> Point:
    """Where an object stands: the bottom centre of its box (x1, y1, x2, y2; y grows downwards), which
    is where a car or a person touches the ground, so a line drawn on the road counts what drives over
    it, not what passes in front of it higher up in the picture."""
    return ((box[0] + box[2]) / 2.0, box[3])


def cross(a: Point, b: Point, p: Point) -> float:
    """(b - a) x (p - a): negative when p is on the left-hand side of a->b walking from a to b with y
    pointing down (the screen's way), positive on the right-hand side, 0 on the line."""
    return (b[0] - a[0]) * (p[1] - a[1]) - (b[1] - a[1]) * (p[0] - a[0])


def side(a: Point, b: Point, p: Point) -> int:
    """-1 left-hand side, +1 right-hand side, 0 on the (infinite) line through a and b."""
    value = cross(a, b, p)
    return (value > 0) - (value < 0)


def _on_segment(a: Point, b: Point, p: Point) -> bool:
    """p, known to be collinear with a and b, lies on the closed segment a-b."""
    return min(a[0], b[0]) <= p[0] <= max(a[0], b[0]) and min(a[1], b[1]) <= p[1] <= max(a[1], b[1])


def segments_intersect(p1: Point, p2: Point, q1: Point, q2: Point) -> bool:
    """The closed segments p1-p2 and q1-q2 share at least one point (touching counts)."""
    d1, d2 = side(q1, q2, p1), side(q1, q2, p2)
    d3, d4 = side(p1, p2, q1), side(p1, p2, q2)
    if d1 * d2 < 0 and d3 * d4 < 0:
        return True
    return (
        (d1 == 0 and _on_segment(q1, q2, p1))
        or (d2 == 0 and _on_segment(q1, q2, p2))
        or (d3 == 0 and _on_segment(p1, p2, q1))
        or (d4 == 0 and _on_segment(p1, p2, q2))
    )


def inside_polygon(p: Point, polygon: Sequence[Point]) -> bool:
    """p is inside the simple polygon or on its boundary (even-odd rule otherwise)."""
    count = len(polygon)
    for i in range(count):
        a, b = polygon[i], polygon[(i + 1) % count]
        if side(a, b, p) == 0 and _on_segment(a, b, p):
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
