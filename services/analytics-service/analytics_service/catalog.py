"""Which streams the service analyzes, and the lines and zones of each: the stream registry's, followed
live, or the streams file's (ANALYTICS_STREAMS_FILE) while the registry holds no stream.

The registry wins as soon as it holds one stream. It is what the control API and `apply -f` write and
what a deployment seeds, so a file mounted beside it must never bring back a line or a stream an
operator changed or removed. While the registry is empty (a local run, the demo on a fresh broker) or
not read yet, the file applies as it always did. The choice is made again at every change of the
registry: removing its last stream goes back to the file.

Read by the worker thread at every result (Analytics, StreamAdmission) and by the HTTP handlers (the
live view's regions); the registry follower's thread only moves the registry's version on. A stream's
regions are the same object until they change, so a per-frame check is an identity comparison.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import Literal, Protocol

from vidpipe.analytics_config import AnalyticsConfig, StreamAnalytics
from vidpipe.stream_registry import StreamDefinition

log = logging.getLogger(__name__)

Source = Literal["registry", "file"]


class RegistryReader(Protocol):
    """What the catalog needs of vidpipe.registry_client.RegistryFollower."""

    @property
    def ready(self) -> bool: ...

    @property
    def version(self) -> int: ...

    def snapshot(self) -> dict[str, StreamDefinition]: ...


class RegionCatalog:
    def __init__(
        self,
        file_config: AnalyticsConfig | None = None,
        file_streams: Iterable[str] | None = None,
        registry: RegistryReader | None = None,
    ):
        """file_config, file_streams: the streams file's lines and zones and its list of streams (None:
        no list, ANALYTICS_MAX_STREAMS bounds the streams); registry: the follower (None: file only)."""
        self._file_config = file_config or AnalyticsConfig()
        self._file_streams = frozenset(file_streams) if file_streams is not None else None
        self.registry = registry
        self._lock = threading.Lock()
        self._seen: tuple[bool, int] | None = None
        self._source: Source = "file"
        self._listed: frozenset[str] | None = None
        self._specs: dict[str, StreamAnalytics] = {}
        self._none = StreamAnalytics()
        self._version = 0
        self._rates: dict[str, int] = {}

    def for_stream(self, stream_id: str) -> StreamAnalytics:
        with self._lock:
            self._refresh()
            return self._specs.get(stream_id, self._none)

    def frame_rate_for(self, stream_id: str) -> int | None:
        """The rate its frames come at, from the registry (its target_fps), else None (ANALYTICS_FRAME_RATE)."""
        with self._lock:
            self._refresh()
            return self._rates.get(stream_id)

    def listed(self) -> frozenset[str] | None:
        """The streams analyzed (None: no list, the first ANALYTICS_MAX_STREAMS seen)."""
        with self._lock:
            self._refresh()
            return self._listed

    @property
    def source(self) -> Source:
        with self._lock:
            self._refresh()
            return self._source

    @property
    def version(self) -> int:
        """Moves on whenever the list of streams or any stream's regions change."""
        with self._lock:
            self._refresh()
            return self._version

    def _refresh(self) -> None:
        registry = self.registry
        seen = (registry.ready, registry.version) if registry is not None else (False, 0)
        if seen == self._seen:
            return
        self._seen = seen
        streams = registry.snapshot() if registry is not None and seen[0] else {}
        source: Source
        listed: frozenset[str] | None
        # ByteTrack counts a lost track's buffer in frames: a 5 frames/s camera tracked as if at 25 would keep
        # a lost track five times too long.
        self._rates = {k: max(1, round(d.target_fps)) for k, d in streams.items()}
        if streams:
            source, listed = "registry", frozenset(streams)
            specs = {stream_id: definition.analytics for stream_id, definition in streams.items()}
        else:
            source, listed, specs = "file", self._file_streams, dict(self._file_config.streams)
        # Unchanged regions keep their object: an analyzer compares by identity first.
        specs = {k: self._specs[k] if self._specs.get(k) == v else v for k, v in specs.items()}
        if (source, listed, specs) != (self._source, self._listed, self._specs):
            self._version += 1
        self._source, self._listed, self._specs = source, listed, specs
