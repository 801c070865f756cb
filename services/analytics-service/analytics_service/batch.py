"""What the analytics loop keeps per batch of results, and how a refused result names its field."""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import ValidationError

from vidpipe.member import TopicPart


@dataclass
class Batch:
    offsets: dict[TopicPart, int] = field(default_factory=dict)  # next offset to commit, per partition
    # key, value, type, headers (the trace context of the result's processing); in order
    events: list[tuple[bytes, bytes, str, list[tuple[str, bytes]]]] = field(default_factory=list)
    pending: int = 0
    delivered: set[int] = field(default_factory=set)  # indexes the broker acknowledged
    error: str = ""


def invalid_field(exc: ValidationError) -> tuple[str, str]:
    """(the field at fault as a dotted path, the message) of a result's first validation error."""
    errors = exc.errors()
    if not errors:
        return "value", str(exc)
    first = errors[0]
    path = ".".join(str(p) for p in first["loc"])
    if first["type"] == "json_invalid" or not path:
        return "json", first["msg"]
    return path, first["msg"]
