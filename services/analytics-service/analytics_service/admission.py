"""Which streams' results the analytics service analyzes. The set is bounded, so tracker state and metric
label sets cannot grow without end whatever stream ids reach the results topic: with a list of streams
(the stream registry's, or the streams file's: analytics_service.catalog), only those; without one, the
first ANALYTICS_MAX_STREAMS streams seen. Results of any other stream are counted under one series
(vidpipe_analytics_other_stream_results_total{reason}) and skipped. The list follows the registry: a
stream removed from it is no longer admitted, and `relisted` names it once so its state is dropped."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from prometheus_client import Counter

from .catalog import RegionCatalog

log = logging.getLogger(__name__)

# Results of other streams are logged at most this often (their stream ids are not kept).
_OTHER_LOG_EVERY_S = 60.0


class StreamAdmission:
    def __init__(self, listed: Iterable[str] | RegionCatalog | None, max_streams: int, other_streams: Counter):
        """listed: the stream ids to analyze, fixed or the catalog's as they change (None: the first
        max_streams seen); other_streams: the counter of skipped results, by reason."""
        self.max_streams = max_streams
        self.other_streams = other_streams
        self.admitted: set[str] = set()  # streams analyzed since start: their metric label sets exist
        self.catalog = listed if isinstance(listed, RegionCatalog) else None
        self._version = -1
        self.listed: frozenset[str] | None = None
        if isinstance(listed, RegionCatalog):
            self.relisted()
        elif listed is not None:
            self.listed = frozenset(listed)
        self.other_results = 0
        self._other_logged_at = -_OTHER_LOG_EVERY_S

    def relisted(self) -> list[str]:
        """The admitted streams the catalog's list no longer holds (removed from the registry), once:
        they are admitted no more, and their state is the caller's to drop."""
        if self.catalog is None or self.catalog.version == self._version:
            return []
        self._version = self.catalog.version
        self.listed = self.catalog.listed()
        if self.listed is None:
            return []
        gone = sorted(self.admitted - self.listed)
        self.admitted -= set(gone)
        return gone

    def admit(self, stream: str) -> bool:
        """Whether this stream's results are analyzed: a listed stream, or one of the first max_streams
        (a stream once admitted stays admitted, its label sets exist already, until `relisted` drops it)."""
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
            registry = self.catalog is not None and self.catalog.source == "registry"
            why = (
                ("not in the stream registry" if registry else "not in the streams file's list")
                if reason == "unlisted_stream"
                else f"beyond ANALYTICS_MAX_STREAMS={self.max_streams}"
            )
            log.warning("skipping results of streams %s (e.g. %r; %d so far, "
                        "vidpipe_analytics_other_stream_results_total)", why, stream[:64], self.other_results)  # fmt: skip
        return False
