"""What a soak run must show at the end, as pure functions over what it read back.

- Every frame on the frames topic has a result under its identity (stream, epoch, seq), and every
  result of one identity describes the same frame (its capture time): a restart never lets two frames
  share an identity.
- No archived object has more than one version, and none was deleted (no delete markers).
- The analytics service's events equal a replay of the results through the same engine. The service
  restarts its trackers where it had to (a process restart, a partition moving: a tracker_reset with
  reason "start"); the replay restarts at the same frames. An old tracker's events for frames that the
  new tracker analysed again are the at-least-once overlap: they are set aside, not compared, and
  counted. Everything else must match event for event (track ids included).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from analytics_service.engine import StreamAnalyzer, TrackerSettings
from tools.analytics_render import Event, counts_from_events, event_key
from vidpipe.analytics_config import AnalyticsConfig
from vidpipe.contract import FrameId, FrameResult, TrackerReset

# Resets the engine decides from the results themselves (replayed as they come) versus the one the
# service's circumstances decide (a fresh tracker after a restart or a rebalance).
CIRCUMSTANTIAL_RESET = "start"


@dataclass
class IdentityCheck:
    published: int
    with_results: int
    missing: list[FrameId]
    conflicting: list[FrameId]  # one identity, results of different frames
    results_read: int
    duplicate_results: int

    @property
    def ok(self) -> bool:
        return not self.missing and not self.conflicting


def check_identities(published: Mapping[FrameId, int], results: Iterable[FrameResult]) -> IdentityCheck:
    """published: each identity on the frames topic and its capture time."""
    seen: dict[FrameId, set[int]] = defaultdict(set)
    read = 0
    for result in results:
        read += 1
        seen[result.identity].add(result.capture_ts_us)
    missing = sorted(i for i in published if i not in seen)
    # Results of two frames under one identity, or of a frame that is not the one published under it.
    conflicting = sorted(i for i, captures in seen.items() if captures != {published.get(i)})
    return IdentityCheck(
        published=len(published),
        with_results=len(published) - len(missing),
        missing=missing,
        conflicting=conflicting,
        results_read=read,
        duplicate_results=read - len(seen),
    )


@dataclass
class VersionCheck:
    objects: int
    versions: int
    with_several_versions: list[str]
    delete_markers: list[str]
    frames: int = 0

    @property
    def ok(self) -> bool:
        return not self.with_several_versions and not self.delete_markers


def check_versions(versions: Iterable[str], delete_markers: Iterable[str], frames_prefix: str) -> VersionCheck:
    """versions: one key per object version (list_object_versions' Versions)."""
    count = Counter(versions)
    return VersionCheck(
        objects=len(count),
        versions=sum(count.values()),
        with_several_versions=sorted(k for k, n in count.items() if n > 1),
        delete_markers=sorted(set(delete_markers)),
        frames=sum(1 for k in count if k.startswith(frames_prefix)),
    )


@dataclass
class StreamReplay:
    stream_id: str
    results: int
    tracker_lives: int  # the service's trackers for this stream (1 + circumstantial resets)
    service_events: int  # distinct events delivered by the service
    overlap_events: int  # an old tracker's events for frames a newer tracker analysed again
    replay_events: int
    only_service: list[tuple[Any, ...]] = field(default_factory=list)
    only_replay: list[tuple[Any, ...]] = field(default_factory=list)
    counts: dict[str, Any] = field(default_factory=dict)
    replay_counts: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.only_service and not self.only_replay and self.counts == self.replay_counts


def _position(item: FrameResult | Event) -> tuple[int, int]:
    return item.epoch, item.seq


def replay_stream(
    stream_id: str,
    results: Iterable[FrameResult],
    events: Iterable[Event],
    config: AnalyticsConfig,
    settings: TrackerSettings | None = None,
) -> StreamReplay:
    """One stream's results (any order, duplicates allowed) through the engine, restarted where the
    service's tracker restarted, against the service's events in the order they were delivered."""
    settings = settings or TrackerSettings()
    spec = config.for_stream(stream_id)
    ordered = sorted({r.identity: r for r in results if r.stream_id == stream_id}.values(), key=_position)

    # The service's events: copies of one event (redelivered) once; an old tracker's events for frames
    # that a later tracker analysed again are set aside.
    distinct: list[Event] = []
    keys: set[tuple[Any, ...]] = set()
    for event in events:
        if event.stream_id == stream_id and (key := event_key(event)) not in keys:
            keys.add(key)
            distinct.append(event)
    kept: list[Event] = []
    restarts: set[tuple[int, int]] = set()
    overlap = 0
    for event in distinct:
        if isinstance(event, TrackerReset) and event.reason == CIRCUMSTANTIAL_RESET and kept:
            point = _position(event)
            # A tracker that died before committing anything is superseded with all its events.
            restarts = {p for p in restarts if p < point} | {point}
            before = len(kept)
            kept = [e for e in kept if _position(e) < point]
            overlap += before - len(kept)
        kept.append(event)

    replayed: list[Event] = []
    analyzer = StreamAnalyzer(stream_id, spec, settings)
    for index, result in enumerate(ordered):
        if index and _position(result) in restarts:
            analyzer = StreamAnalyzer(stream_id, spec, settings)  # what the restarted service had
        replayed.extend(analyzer.process(result, now_us=result.processed_ts_us).events)

    service_keys = Counter(event_key(e) for e in kept)
    replay_keys = Counter(event_key(e) for e in replayed)
    return StreamReplay(
        stream_id=stream_id,
        results=len(ordered),
        tracker_lives=1 + len(restarts),
        service_events=len(kept),
        overlap_events=overlap,
        replay_events=len(replayed),
        only_service=sorted((service_keys - replay_keys).elements(), key=repr)[:20],
        only_replay=sorted((replay_keys - service_keys).elements(), key=repr)[:20],
        counts=counts_from_events(kept, spec),
        replay_counts=counts_from_events(replayed, spec),
    )
