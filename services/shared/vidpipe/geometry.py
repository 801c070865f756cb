"""Plane geometry of lines and zones, in image coordinates (x right, y down), exact on the boundary.

One implementation for both of its users: the analytics configuration refuses self-intersecting zones
with it, and the analytics service decides with it which side of a line an object is on and whether its
path crossed the line.
"""

from __future__ import annotations

Point = tuple[float, float]


def cross(a: Point, b: Point, p: Point) -> float:
    """(b - a) x (p - a): negative when p is on the left-hand side of a->b walking from a to b with y
    pointing down (the screen's way), positive on the right-hand side, 0 on the line."""
    return (b[0] - a[0]) * (p[1] - a[1]) - (b[1] - a[1]) * (p[0] - a[0])


def side(a: Point, b: Point, p: Point) -> int:
    """-1 left-hand side, +1 right-hand side, 0 on the (infinite) line through a and b."""
    value = cross(a, b, p)
    return (value > 0) - (value < 0)


def on_segment(a: Point, b: Point, p: Point) -> bool:
    """p, known to be collinear with a and b, lies on the closed segment a-b."""
    return min(a[0], b[0]) <= p[0] <= max(a[0], b[0]) and min(a[1], b[1]) <= p[1] <= max(a[1], b[1])


def segments_intersect(p1: Point, p2: Point, q1: Point, q2: Point) -> bool:
    """The closed segments p1-p2 and q1-q2 share at least one point (touching counts)."""
    d1, d2 = side(q1, q2, p1), side(q1, q2, p2)
    d3, d4 = side(p1, p2, q1), side(p1, p2, q2)
    if d1 * d2 < 0 and d3 * d4 < 0:
        return True
    return (
        (d1 == 0 and on_segment(q1, q2, p1))
        or (d2 == 0 and on_segment(q1, q2, p2))
        or (d3 == 0 and on_segment(p1, p2, q1))
        or (d4 == 0 and on_segment(p1, p2, q2))
    )
