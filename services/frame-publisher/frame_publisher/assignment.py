"""Which streams a publisher pod carries, and what must change when that changes (pure: no Kafka, no threads).

A pod owns some partitions of the registry topic (Kafka's group protocol decides which). Every stream id lands
in one partition (the key hash), so the pod keeps one RegistryState per owned partition, read from the
partition's start. It carries the enabled streams of the partitions it has read to their end: before that, a
definition may still be followed by its removal, and a stream started too early would publish for nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from vidpipe.stream_registry import RegistryState, StreamDefinition

# What the publisher does with a definition; lines and zones are the analytics service's.
PUBLISHING_FIELDS = ("source", "target_fps", "resize", "jpeg_quality", "loop")


def publishing(definition: StreamDefinition) -> tuple[object, ...]:
    return tuple(getattr(definition, name) for name in PUBLISHING_FIELDS)


def carried(states: Mapping[int, RegistryState], caught_up: Iterable[int]) -> dict[str, StreamDefinition]:
    """The streams this pod carries: the enabled ones of the owned partitions read to their end."""
    wanted: dict[str, StreamDefinition] = {}
    for partition in caught_up:
        state = states.get(partition)
        if state is not None:
            wanted.update(state.enabled())
    return wanted


def defined(states: Mapping[int, RegistryState], stream_id: str) -> bool:
    """Whether an owned partition still defines the stream (disabled, say), as opposed to removed."""
    return any(stream_id in state.streams for state in states.values())


@dataclass(frozen=True)
class Reconciliation:
    """What makes the running streams match the wanted ones."""

    start: list[StreamDefinition] = field(default_factory=list)
    stop: list[str] = field(default_factory=list)
    # What it publishes changed (source, rate, size, quality, loop): stop it, then start it again.
    restart: list[StreamDefinition] = field(default_factory=list)
    # Only the analytics' part changed: it runs on, with the new definition noted.
    update: list[StreamDefinition] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.start or self.stop or self.restart or self.update)


def reconcile(running: Mapping[str, StreamDefinition], wanted: Mapping[str, StreamDefinition]) -> Reconciliation:
    start = [d for k, d in sorted(wanted.items()) if k not in running]
    stop = sorted(k for k in running if k not in wanted)
    changed = [(running[k], d) for k, d in sorted(wanted.items()) if k in running and running[k] != d]
    restart = [after for before, after in changed if publishing(before) != publishing(after)]
    update = [after for before, after in changed if publishing(before) == publishing(after)]
    return Reconciliation(start, stop, restart, update)
