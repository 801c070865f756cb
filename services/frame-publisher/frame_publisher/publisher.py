"""Encode frames as JPEG and publish them to the frames topic.

File sources apply back-pressure (nothing is dropped, the reader waits); live sources never
block their capture loop: a bounded buffer drops the oldest frames, and they are counted.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Protocol

import cv2
import numpy as np
from confluent_kafka import KafkaError, KafkaException, Message, Producer
from opentelemetry.trace import SpanKind

from vidpipe import tracing
from vidpipe.contract import MAX_FRAME_BYTES, FrameMeta, check_stream_id, new_epoch
from vidpipe.kafka import KafkaSettings, ReplaceableProducer

from .sampling import DropOldestBuffer, FrameSampler, output_size
from .settings import Pace, PublisherSettings
from .sources import Frame, FrameSource

if TYPE_CHECKING:
    from vidpipe.health import Heartbeat

log = logging.getLogger(__name__)


class Progress(Protocol):
    """A progress bar (tqdm's): told of each frame published."""

    def update(self, n: int, /) -> object: ...


@dataclass
class PublishSummary:
    stream_id: str
    source: str  # as given, with credentials and query values redacted (redact.redact_url)
    frames_read: int = 0
    frames_published: int = 0  # handed to the producer
    frames_delivered: int = 0  # acknowledged by the broker (acks=all)
    frames_failed: int = 0  # delivery failed or still unacknowledged at exit
    frames_dropped: int = 0  # live source: oldest dropped because the producer was backed up
    frames_sampled_out: int = 0  # skipped to meet the target fps
    frames_oversized: int = 0  # JPEG over the contract's frame limit
    producer_restarts: int = 0  # producers replaced after a fatal error
    last_published_unix_s: float = 0.0  # wall time of the last frame handed to the producer (0: none yet)
    epoch: int = 0  # this run's epoch: with seq, each frame's identity (vidpipe.contract.Header.EPOCH)
    first_seq: int = 0
    last_seq: int = -1
    elapsed_s: float = 0.0
    fps: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# The summary's running counts (each a /metrics counter): a stream's runs add up.
COUNTED = (
    "frames_read",
    "frames_published",
    "frames_delivered",
    "frames_failed",
    "frames_dropped",
    "frames_sampled_out",
    "frames_oversized",
    "producer_restarts",
)


def encode_jpeg(image: np.ndarray, size: tuple[int, int], quality: int) -> bytes:
    height, width = image.shape[:2]
    if (width, height) != size:
        interpolation = cv2.INTER_AREA if size[0] < width else cv2.INTER_LINEAR
        image = cv2.resize(image, size, interpolation=interpolation)
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return encoded.tobytes()


class PodProducer(ReplaceableProducer):
    """The process's one producer, shared by every stream it carries: any stream may note a fatal error,
    and the first to see it makes the replacement (the others go on with it)."""

    def __init__(self, kafka: KafkaSettings, client_id: str = "vidpipe-publisher"):
        super().__init__(kafka, client_id)
        self._lock = threading.Lock()

    def replace_failed(self) -> bool:
        """Replace the producer if it failed; False when it had not (or another stream just replaced it)."""
        with self._lock:
            if not self.failed:
                return False
            log.error("producer failed fatally (%s); replacing it", self.failed)
            self.replace()  # the failed one's delivery reports count the frames it held as failed
            return True


class FramePublisher:
    def __init__(
        self,
        settings: PublisherSettings,
        kafka: KafkaSettings,
        frames_topic: str,
        stop: threading.Event,
        heartbeat: Heartbeat | None = None,
        producers: PodProducer | None = None,
    ):
        """producers: the pod's producer when several streams share it (then flushing waits for this
        stream's frames only); by default one of its own."""
        self.settings = settings
        self.heartbeat = heartbeat
        self.topic = frames_topic
        self.stop = stop
        self.shared = producers is not None
        self.producers = producers or PodProducer(kafka)
        self._summary: PublishSummary | None = None
        # Delivery reports run on whichever thread polls the shared producer.
        self._counts = threading.Lock()

    @property
    def producer(self) -> Producer:
        return self.producers.current

    def _replace_failed_producer(self) -> None:
        """A fatal producer error ends that producer, not the stream: go on with a new one. The frames
        the broker had not acknowledged are counted as failed (exit code 3), not sent again."""
        if self.producers.failed and self.producers.replace_failed() and self._summary is not None:
            self._summary.producer_restarts += 1

    @property
    def summary(self) -> PublishSummary | None:
        return self._summary

    def _beat(self) -> None:
        if self.heartbeat is not None:
            self.heartbeat.beat()

    def run(
        self,
        source: FrameSource,
        progress: Progress | None = None,
        stream_id: str | None = None,
        source_label: str | None = None,
    ) -> PublishSummary:
        """stream_id: already checked against the contract (__main__.resolve_stream_id); source_label: the
        redacted source shown in the summary."""
        stream_id = check_stream_id(stream_id or self.settings.stream_id or source.name)
        summary = PublishSummary(
            stream_id=stream_id,
            source=source_label or source.name,
            # A new epoch per run: seq starts again, the identity (stream, epoch, seq) does not repeat.
            epoch=self.settings.epoch or new_epoch(),
            first_seq=self.settings.start_seq,
            last_seq=self.settings.start_seq - 1,
        )
        self._summary = summary
        started = time.monotonic()
        try:
            if source.live:
                self._run_live(source, summary)
            else:
                self._run_file(source, summary, progress)
        finally:
            self._flush(summary)
            summary.elapsed_s = round(time.monotonic() - started, 3)
            summary.fps = round(summary.frames_published / summary.elapsed_s, 2) if summary.elapsed_s else 0.0
        return summary

    # --- file and folder sources: back-pressure, no drops ---------------------------------------

    def _run_file(self, source: FrameSource, summary: PublishSummary, progress: Progress | None) -> None:
        sampler = FrameSampler(self.settings.target_fps)
        pace = self.settings.pace is Pace.SOURCE
        speed = self.settings.speed
        wall_start = time.monotonic()
        for frame in source.frames():
            if self.stop.is_set() or self._limit_reached(summary):
                break
            summary.frames_read += 1
            if not sampler.keep(frame.timestamp_s):
                summary.frames_sampled_out += 1
                continue
            if pace and (ahead := frame.timestamp_s / speed - (time.monotonic() - wall_start)) > 0:
                if self.stop.wait(ahead):
                    break
            frame.capture_ts_us = time.time_ns() // 1000  # the moment it enters the pipeline
            self._publish(frame, summary, block=True)
            if progress is not None:
                progress.update(1)
            self.producer.poll(0)
            self._replace_failed_producer()
            self._beat()

    # --- live sources: capture never blocks -----------------------------------------------------

    def _run_live(self, source: FrameSource, summary: PublishSummary) -> None:
        buffer: DropOldestBuffer[Frame] = DropOldestBuffer(self.settings.live_buffer)
        sampler = FrameSampler(self.settings.target_fps)
        failure: list[BaseException] = []

        def capture() -> None:
            try:
                for frame in source.frames():
                    if self.stop.is_set():
                        break
                    summary.frames_read += 1
                    if sampler.keep(frame.timestamp_s):
                        buffer.put(frame)
                    else:
                        summary.frames_sampled_out += 1
            except BaseException as exc:  # reported by the publishing loop, which owns the exit code
                failure.append(exc)
            finally:
                buffer.close()

        thread = threading.Thread(target=capture, name="capture", daemon=True)
        thread.start()
        try:
            while not self.stop.is_set() and not self._limit_reached(summary):
                frame = buffer.get(timeout=0.5)
                self._beat()
                if frame is None:
                    if buffer.closed_and_empty:
                        break
                    continue
                self._publish(frame, summary, block=False, buffer=buffer)
                self.producer.poll(0)
                self._replace_failed_producer()
        finally:
            self.stop.set()
            source.close()
            thread.join(timeout=5)
            summary.frames_dropped += buffer.dropped
        if failure:
            raise failure[0]

    # --- shared ------------------------------------------------------------------------------

    def _limit_reached(self, summary: PublishSummary) -> bool:
        return bool(self.settings.max_frames) and summary.frames_published >= self.settings.max_frames

    def _publish(
        self, frame: Frame, summary: PublishSummary, block: bool, buffer: DropOldestBuffer[Frame] | None = None
    ) -> None:
        height, width = frame.image.shape[:2]
        size = output_size(width, height, self.settings.resize_to())
        jpeg = encode_jpeg(frame.image, size, self.settings.jpeg_quality)
        if len(jpeg) > MAX_FRAME_BYTES:
            summary.frames_oversized += 1
            log.warning(
                "frame of %d bytes exceeds the %d-byte limit; lower PUBLISHER_JPEG_QUALITY or resize",
                len(jpeg),
                MAX_FRAME_BYTES,
            )
            return
        seq = summary.last_seq + 1
        meta = FrameMeta(
            stream_id=summary.stream_id,
            seq=seq,
            capture_ts_us=frame.capture_ts_us,
            width=size[0],
            height=size[1],
            epoch=summary.epoch,
        )
        # The frame's trace starts here (sampled at PUBLISHER_TRACE_SAMPLE_RATIO); its context replaces
        # the contract's untraced traceparent in the headers.
        with tracing.tracer().start_as_current_span(
            f"{self.topic} publish",
            kind=SpanKind.PRODUCER,
            attributes=tracing.kafka_attributes(self.topic, "publish", meta.key),
        ):
            headers = tracing.inject_headers(meta.headers())
            if not self._produce(meta, jpeg, headers, block, buffer):
                return
        summary.last_seq = seq
        summary.frames_published += 1
        summary.last_published_unix_s = time.time()

    def _produce(
        self,
        meta: FrameMeta,
        jpeg: bytes,
        headers: list[tuple[str, bytes]],
        block: bool,
        buffer: DropOldestBuffer[Frame] | None,
    ) -> bool:
        """Hand the frame to the producer, waiting while it is backed up; False if stopped meanwhile."""
        while True:
            try:
                self.producer.produce(
                    self.topic,
                    key=meta.key,
                    value=jpeg,
                    # confluent-kafka asks for list[tuple[str, str | bytes | None]]; list is invariant, ours holds bytes
                    headers=headers,  # type: ignore[arg-type]
                    on_delivery=self._on_delivery,
                )
                break
            except BufferError:
                # The producer is backed up (broker slow or away).
                if not block and buffer is not None:
                    buffer.drop_oldest()  # keep the capture side current; the newest frames matter
                self.producer.poll(0.1)
                self._replace_failed_producer()
                if self.stop.is_set() and not block:
                    return False
            except KafkaException as exc:
                if not self.producers.note_error(exc):
                    raise
                self._replace_failed_producer()  # and this frame goes to the new one
        return True

    def _on_delivery(self, error: KafkaError | None, message: Message) -> None:
        summary = self._summary
        if summary is None:  # cannot happen: run() sets it before anything is produced
            return
        with self._counts:
            if error is None:
                summary.frames_delivered += 1
            else:
                summary.frames_failed += 1
        if error is not None:
            log.error("frame delivery failed for %s: %s", summary.stream_id, error)

    def _flush(self, summary: PublishSummary) -> None:
        if self.shared:
            remaining = self._flush_own(summary)
        else:
            remaining = self.producer.flush(self.settings.flush_timeout_s)
        if remaining:
            with self._counts:
                summary.frames_failed += remaining
            log.error("%d frames still unacknowledged after %.0fs", remaining, self.settings.flush_timeout_s)

    def _flush_own(self, summary: PublishSummary) -> int:
        """Wait for this stream's frames only: the shared producer's queue may never empty while other
        streams publish. Returns how many are still unacknowledged."""
        deadline = time.monotonic() + self.settings.flush_timeout_s
        while (left := self.outstanding(summary)) and time.monotonic() < deadline:
            self.producer.poll(0.05)
            self._replace_failed_producer()
        return left

    def outstanding(self, summary: PublishSummary) -> int:
        with self._counts:
            return max(0, summary.frames_published - summary.frames_delivered - summary.frames_failed)
