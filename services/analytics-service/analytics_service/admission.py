"""Which streams' results the analytics service analyzes. The set is bounded, so tracker state and metric
label sets cannot grow without end whatever stream ids reach the results topic: with a streams list
(ANALYTICS_STREAMS_FILE), only its streams; without one, the first ANALYTICS_MAX_STREAMS streams seen.
Results of any other stream are counted under one series
(vidpipe_analytics_other_stream_results_total{reason}) and skipped."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from prometheus_client import Counter

log = logging.getLogger(__name__)

# Results of other streams are logged at most this often (their stream ids are not kept).
_OTHER_LOG_EVERY_S = 60.0


class StreamAdmission:
    def __init__(self, listed: Iterable[str] | None, max_streams: int, other_streams: Counter):
        """listed: the streams file's stream ids (None: the first max_streams seen); other_streams: the
        counter of skipped results, by reason."""
        self.listed = frozenset(listed) if listed is not None else None
        self.max_streams = max_streams
        self.other_streams = other_streams
        self.admitted: set[str] = set()  # streams analyzed since start: their metric label sets exist
        self.other_results = 0
        self._other_logged_at = -_OTHER_LOG_EVERY_S

    def admit(self, stream: str) -> bool:
        """Whether this stream's results are analyzed: a listed stream, or one of the first max_streams
        (a stream once admitted stays admitted: its label sets exist already)."""
        if stream in self.admitted:
            return True
        if self.listed is not None:
            reason = "unlisted_stream"
            admitted = stream in self.listed
        else:
            reason = "stream_limit"
            admitted = len(self.admitted) < self.max_streams
        if admitted:
            self.admitted.add(stream)
            return True
        self.other_results += 1
        self.other_streams.labels(reason).inc()
        now = time.monotonic()
        if now - self._other_logged_at >= _OTHER_LOG_EVERY_S:
            self._other_logged_at = now
            why = (
                "not in the streams file's list"
                if reason == "unlisted_stream"
                else f"beyond ANALYTICS_MAX_STREAMS={self.max_streams}"
            )
            log.warning("skipping results of streams %s (e.g. %r; %d so far, "
                        "vidpipe_analytics_other_stream_results_total)", why, stream[:64], self.other_results)  # fmt: skip
        return False
