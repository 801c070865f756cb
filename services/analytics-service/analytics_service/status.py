"""Each stream's state for the control API and the live view: what its publisher reports (the compacted
status topic, vidpipe.stream_status) when it reports, else what this replica's results show.

The publisher's status says what no result can: connecting, failed and why, which pod carries the
stream. Results only show that frames arrive (their rate and the age of the last one), and only for the
streams whose results partitions this replica owns; a stream with neither is `unknown` here.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from vidpipe.kafka import KafkaSettings
from vidpipe.registry_client import CompactedTopicFollower
from vidpipe.stream_registry import StreamDefinition
from vidpipe.stream_status import StatusError, StreamStatus, decode_status

from .view import LiveView

log = logging.getLogger(__name__)

# A status not refreshed for this many of its publisher's intervals is stale (the pod died or lost the
# stream without a word): the results decide then.
STALE_INTERVALS = 3.0
# Results older than this (or than 5 frame intervals at the stream's target rate) no longer count as
# frames flowing.
RESULTS_STALE_S = 10.0


class StatusFollower(CompactedTopicFollower):
    """The latest status of every stream, from the status topic (read whole, then followed)."""

    name = "status-reader"

    def __init__(self, kafka: KafkaSettings, topic: str, poll_s: float = 0.5):
        super().__init__(kafka, topic, poll_s)
        self._statuses: dict[str, StreamStatus] = {}
        self._lock = threading.Lock()

    def get(self, stream_id: str) -> StreamStatus | None:
        with self._lock:
            return self._statuses.get(stream_id)

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        try:
            stream_id, status = decode_status(key, value)
        except StatusError as exc:
            log.warning("skipped a stream status that breaks the contract: %s", exc)
            return
        with self._lock:
            if status is None:
                self._statuses.pop(stream_id, None)
            else:
                self._statuses[stream_id] = status


def stream_state(
    definition: StreamDefinition, view: LiveView, publisher: StreamStatus | None, now_s: float | None = None
) -> dict[str, Any]:
    """The state of one stream: `state` (disabled; the publisher's connecting, publishing, failed,
    finished, stopped; or, without a fresh publisher status, publishing when results arrive here, stale
    when they stopped, unknown when this replica has none), `reported_by` (publisher or results), frames/s,
    the last frame's age, the last error and the pod; `analyzed_here` when this replica tracks it."""
    now_s = time.time() if now_s is None else now_s
    latest = view.latest(definition.id)
    results_age = round(max(0.0, now_s - latest.capture_ts_us / 1e6), 1) if latest is not None else None
    state: dict[str, Any] = {
        "state": "unknown",
        "reported_by": "results",
        "fps": latest.fps if latest is not None else None,
        "last_frame_age_s": results_age,
        "last_error": None,
        "pod": None,
        "analyzed_here": latest is not None,
    }
    if publisher is not None and now_s - publisher.updated_unix_s <= STALE_INTERVALS * publisher.every_s:
        age = now_s - publisher.last_frame_unix_s if publisher.last_frame_unix_s is not None else None
        state.update(
            state=publisher.state,
            reported_by="publisher",
            fps=publisher.fps,
            last_frame_age_s=round(max(0.0, age), 1) if age is not None else results_age,
            last_error=publisher.last_error,
            pod=publisher.pod,
        )
    elif results_age is not None:
        fresh = results_age <= max(RESULTS_STALE_S, 5.0 / definition.target_fps)
        state["state"] = "publishing" if fresh else "stale"
    if not definition.enabled:
        state["state"] = "disabled"
    return state
