"""One stream a publisher pod carries: a thread that reads its source by reference, publishes its frames
through the pod's producer, and retries a source that fails without disturbing the pod's other streams.

Each run (each start, and each retry after a failure) gets a fresh epoch, so the frames of a stream that moved
between pods or restarted never share an identity. A non-looping file that ends leaves the stream `finished`
until its definition changes.
"""

from __future__ import annotations

import logging
import threading
import time

from vidpipe.backoff import Backoff
from vidpipe.kafka import KafkaSettings
from vidpipe.redact import Redactor, redact_url, url_secrets
from vidpipe.stream_registry import StreamDefinition
from vidpipe.stream_status import StreamState, StreamStatus

from .publisher import COUNTED, FramePublisher, PodProducer, PublishSummary
from .settings import Pace, PublisherSettings
from .source_secret import SourceSecretError, resolve_reference
from .sources import FrameSource, SourceError, open_source

log = logging.getLogger(__name__)


class SourceRedactor(Redactor):
    """The secret parts of every source this pod has resolved (the streams it carries change)."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()

    @property
    def needed(self) -> bool:
        return True  # sources are only known once streams are assigned

    def add(self, uri: str) -> None:
        found = url_secrets(uri)
        with self._lock:
            if not found <= set(self.secrets):
                self.secrets = sorted(set(self.secrets) | found, key=len, reverse=True)


def stream_settings(base: PublisherSettings, definition: StreamDefinition) -> PublisherSettings:
    """The pod's settings with the definition's: sampled and paced like a camera, a new epoch per run."""
    return base.model_copy(
        update={
            "stream_id": definition.id,
            "target_fps": definition.target_fps,
            "resize": definition.resize,
            "jpeg_quality": definition.jpeg_quality,
            "loop": definition.loop,
            "pace": Pace.SOURCE,
            "speed": 1.0,
            "max_frames": 0,
            "start_seq": 0,
            "epoch": 0,
        }
    )


class StreamRunner:
    def __init__(
        self,
        definition: StreamDefinition,
        partition: int,
        settings: PublisherSettings,
        kafka: KafkaSettings,
        frames_topic: str,
        producers: PodProducer,
        redactor: SourceRedactor,
    ):
        self.definition = definition
        self.partition = partition
        self.settings = stream_settings(settings, definition)
        self.kafka, self.frames_topic, self.producers, self.redactor = kafka, frames_topic, producers, redactor
        self.last_error: str | None = None
        self.failures = 0  # attempts that ended in an error
        self.fps = 0.0
        self._failed = self._finished = False
        self._stopping = threading.Event()
        self._attempt = threading.Event()  # this run's stop: a run that ends by itself sets it, not _stopping
        self._lock = threading.Lock()
        self._publisher: FramePublisher | None = None
        self._source: FrameSource | None = None
        self._done = dict.fromkeys(COUNTED, 0)  # the finished runs' counts
        self._reconnects_done = 0
        self._last_published = 0.0  # the finished runs' last frame
        self._rate_mark = (time.monotonic(), 0)
        self._thread = threading.Thread(target=self._run, name=f"stream-{definition.id}", daemon=True)

    @property
    def stream_id(self) -> str:
        return self.definition.id

    def start(self) -> StreamRunner:
        self._thread.start()
        return self

    def request_stop(self) -> None:
        with self._lock:
            self._stopping.set()
            self._attempt.set()

    def join(self, timeout_s: float) -> bool:
        """Wait for the stream's pending frames to be flushed; False if it is still going."""
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    # --- the stream's thread ---------------------------------------------------------------------

    def _resolve(self) -> str:
        try:
            uri = resolve_reference(self.definition.source, self.settings.sources_dir)
        except SourceSecretError as exc:
            raise SourceError(str(exc)) from None
        self.redactor.add(uri)  # before anything could print it
        return uri

    def _run(self) -> None:
        backoff = Backoff(self.settings.reconnect_initial_s, self.settings.reconnect_max_s)
        while True:
            with self._lock:
                if self._stopping.is_set():
                    return
                self._attempt = attempt = threading.Event()
            publisher: FramePublisher | None = None
            try:
                uri = self._resolve()
                self._source = open_source(
                    uri,
                    self.definition.loop,
                    attempt,
                    self.definition.target_fps,
                    self.settings.reconnect_initial_s,
                    self.settings.reconnect_max_s,
                    resolve=self._resolve,
                )
                publisher = self._publisher = FramePublisher(
                    self.settings, self.kafka, self.frames_topic, attempt, producers=self.producers
                )
                self._failed, self.last_error = False, None
                publisher.run(self._source, stream_id=self.definition.id, source_label=redact_url(uri))
            except Exception as exc:  # this stream's trouble, never the pod's other streams'
                self._end_run(publisher)
                self.failures += 1
                self._failed, self.last_error = True, self.redactor(str(exc))[:2000]
                delay = backoff.next()
                log.warning("stream %s: %s; trying again in %.1fs", self.stream_id, self.last_error, delay)
                if self._stopping.wait(delay):
                    return
                continue
            self._end_run(publisher)
            backoff.reset()
            if not self._stopping.is_set() and not attempt.is_set():
                self._finished = True  # a file without loop reached its end
                log.info("stream %s: its source ended", self.stream_id)
                self._stopping.wait()
                return

    def _end_run(self, publisher: FramePublisher | None) -> None:
        """Add the run's counts to the stream's (the counters never go back while this pod carries it)."""
        with self._lock:
            summary = publisher.summary if publisher is not None else None
            if summary is not None:
                for name in COUNTED:
                    self._done[name] += getattr(summary, name)
                self._last_published = max(self._last_published, summary.last_published_unix_s)
            self._reconnects_done += getattr(self._source, "reconnects", 0)
            self._publisher, self._source = None, None

    # --- figures (read from other threads) ------------------------------------------------------

    @property
    def summary(self) -> PublishSummary | None:
        publisher = self._publisher
        return publisher.summary if publisher is not None else None

    def totals(self) -> dict[str, int]:
        with self._lock:
            summary = self.summary
            return {name: self._done[name] + (getattr(summary, name) if summary else 0) for name in COUNTED}

    @property
    def reconnects(self) -> int:
        with self._lock:
            return self._reconnects_done + getattr(self._source, "reconnects", 0)

    @property
    def last_published_unix_s(self) -> float:
        summary = self.summary
        return max(self._last_published, summary.last_published_unix_s if summary is not None else 0.0)

    @property
    def state(self) -> StreamState:
        source, summary = self._source, self.summary
        if self._finished:
            return "finished"
        if self._failed or source is None:
            return "failed" if self._failed else "connecting"
        if source.live:
            connected = getattr(source, "connected", False)
            return "publishing" if connected else "failed" if getattr(source, "last_error", None) else "connecting"
        return "publishing" if summary is not None and summary.frames_published else "connecting"

    @property
    def error(self) -> str | None:
        live_error = getattr(self._source, "last_error", None)
        return self.redactor(live_error) if live_error else self.last_error

    def measure_fps(self) -> float:
        """Frames published per second since the last measurement (kept for /metrics)."""
        now, published = time.monotonic(), self.totals()["frames_published"]
        then, before = self._rate_mark
        if now - then >= 0.5:
            self.fps, self._rate_mark = round(max(0, published - before) / (now - then), 2), (now, published)
        return self.fps

    def status(self, pod: str, every_s: float, state: StreamState | None = None) -> StreamStatus:
        now, last, summary = time.time(), self.last_published_unix_s, self.summary
        return StreamStatus(
            stream_id=self.stream_id,
            state=state or self.state,
            pod=pod,
            fps=self.fps if state is None else 0.0,
            frames_published=self.totals()["frames_published"],
            last_frame_unix_s=last or None,
            last_frame_age_s=round(max(0.0, now - last), 3) if last else None,
            last_error=self.error,
            epoch=summary.epoch if summary is not None else None,
            updated_unix_s=now,
            every_s=every_s,
        )
