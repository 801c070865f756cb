"""From a batch's accepted frames to results, on a worker thread: frames that would be too old by the time
their result exists are skipped (deadline.py), the rest go to inference (frames at fault isolated, see
isolation.py), each answer becomes the results topic's document, and frames and results are archived.
Only outages are waited out (inference or storage unreachable, overloaded, or answering in a way that
blames no frame); a frame whose content makes a step fail is refused, to be dead-lettered alone."""

from __future__ import annotations

import threading
import time
from contextvars import ContextVar
from typing import Any

from confluent_kafka import Message
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode
from pydantic import ValidationError

from vidpipe import tracing
from vidpipe.contract import MAX_RESULT_BYTES, FrameMeta, FrameResult, encode_result
from vidpipe.member import GroupMember, record_headers

from .archive import Archiver, StorageUnavailable
from .deadline import SendDeadline
from .inference_client import BatchAnswer, BatchRefused, InferenceClient, InferenceUnavailable
from .isolation import BatchIsolator
from .ledger import Batch
from .metrics import ConsumerMetrics, Counts
from .outages import Outages
from .reference import REFERENCE_JPEG
from .settings import ConsumerSettings
from .triage import Accepted, Rejected

# record, result document, the trace context its result is published in (the frame's process span)
Results = list[tuple[Message, dict[str, Any], Context]]
Refused = list[tuple[Message, Rejected]]

# The batch's frames, linked from each inference request of the batch (a worker thread's own value).
_batch_links: ContextVar[list[Link]] = ContextVar("batch_links", default=[])  # noqa: B039 (never mutated)


class ResultRefused(ValueError):
    """What inference answered for this frame cannot be a result document (reason code in `code`)."""

    def __init__(self, message: str, code: str):
        super().__init__(message)
        self.code = code


def result_document(
    meta: FrameMeta, inferred: dict[str, Any], model_name: str, model_version: str, processed_ts_us: int
) -> dict[str, Any]:
    """The results-topic document for one frame, validated by the contract's FrameResult: detections from
    a detector, `outputs` from a raw-mode model. Raises ResultRefused when the answer does not fit the
    contract or the encoded document would exceed MAX_RESULT_BYTES."""
    try:
        result = FrameResult(
            schema_version=meta.schema_version,
            stream_id=meta.stream_id,
            epoch=meta.epoch,
            seq=meta.seq,
            capture_ts_us=meta.capture_ts_us,
            processed_ts_us=processed_ts_us,
            width=meta.width,
            height=meta.height,
            model_name=model_name,
            model_version=model_version,
            model_ms=float(inferred.get("model_ms", 0.0)),
            request_ms=float(inferred.get("request_ms", 0.0)),
            detections=inferred.get("detections", []),
            outputs=inferred.get("outputs"),
            traceparent=meta.traceparent,
        )
    except (ValidationError, TypeError, ValueError) as exc:
        raise ResultRefused(
            f"inference answer does not fit the result contract: {str(exc)[:300]}", "invalid_result"
        ) from None
    doc = result.model_dump(mode="json", exclude_none=True)
    size = len(encode_result(doc))
    if size > MAX_RESULT_BYTES:
        raise ResultRefused(
            f"result document is {size} bytes, over the {MAX_RESULT_BYTES}-byte limit", "result_too_large"
        )
    return doc


class ResultMaker:
    """Makes a batch's results; called on the worker threads, several batches at once."""

    def __init__(
        self,
        member: GroupMember,
        settings: ConsumerSettings,
        client: InferenceClient,
        archiver: Archiver,
        metrics: ConsumerMetrics,
        counts: Counts,
        outages: Outages,
    ):
        self.settings, self.client, self.archiver = settings, client, archiver
        self.metrics, self.counts, self.outages = metrics, counts, outages
        self.deadline = SendDeadline(settings.max_frame_age_ms)
        self._frames_in_inference = 0
        self._load_lock = threading.Lock()
        self._known_good: bytes | None = None  # a frame inference processed recently (see isolation.py)
        self._isolator = BatchIsolator(
            infer=lambda images: outages.retry("inference", lambda: self._infer(images), (InferenceUnavailable,)),
            backoff=lambda attempt: member.sleep(member.backoff_delay(attempt)),
            canary=self._canary,
            attempts=settings.inference_attempts,
        )

    def __call__(self, batch: Batch) -> tuple[Results, Refused]:
        """Results to publish and records to dead-letter; raises only Stopped (or a bug)."""
        self._drop_stale(batch)
        if not batch.accepted:
            return [], []
        # One process span per frame, in its trace; the batch's inference requests are children of the
        # first frame's and link to every frame's (OpenTelemetry's messaging conventions for batches).
        parents = [tracing.extract_headers(record_headers(record)) for record, _ in batch.accepted]
        spans = {
            id(record): self._process_span(record, parent)
            for (record, _), parent in zip(batch.accepted, parents, strict=True)
        }
        token = _batch_links.set(tracing.links_to(parents))
        try:
            with trace.use_span(spans[id(batch.accepted[0][0])], end_on_exit=False):
                results, refused = self._make(batch)
            for record, rejected in refused:
                if (span := spans.get(id(record))) is not None:
                    span.set_status(Status(StatusCode.ERROR, f"{rejected.stage}: {rejected.code}"))
            return [(r, doc, trace.set_span_in_context(spans[id(r)])) for r, doc, _ in results], refused
        finally:
            _batch_links.reset(token)
            for span in spans.values():
                span.end()

    def _process_span(self, record: Message, parent: Context) -> Span:
        topic = record.topic() or ""
        return tracing.tracer().start_span(
            f"{topic} process",
            context=parent,
            kind=SpanKind.CONSUMER,
            attributes=tracing.kafka_attributes(
                topic, "process", record.key(), record.partition(), record.offset(), self.settings.group_id
            ),
        )

    def _make(self, batch: Batch) -> tuple[Results, Refused]:
        with self._load_lock:
            self._frames_in_inference += len(batch.accepted)
            batch.load = self._frames_in_inference
        batch.sent = time.perf_counter()
        try:
            isolated = self.outages.retry(
                "inference", lambda: self._isolator.run([f.value for _, f in batch.accepted]), (InferenceUnavailable,)
            )
        finally:
            with self._load_lock:
                self._frames_in_inference -= len(batch.accepted)
        processed_us = time.time_ns() // 1000
        done: list[tuple[Message, Accepted, dict[str, Any]]] = []
        refused: Refused = []
        for (record, frame), outcome in zip(batch.accepted, isolated.outcomes, strict=True):
            if outcome.result is None:
                refused.append((record, Rejected(outcome.reason, "inference", outcome.code, outcome.attempts)))
                continue
            try:
                doc = result_document(
                    frame.meta, outcome.result, isolated.model_name, isolated.model_version, processed_us
                )
            except ResultRefused as exc:
                refused.append((record, Rejected(str(exc), "result", exc.code, outcome.attempts)))
                continue
            done.append((record, frame, doc))
        if not done:
            return [], refused
        self._known_good = done[-1][1].value
        failed = self.outages.retry(
            "storage", lambda: self.archiver.store([(f.meta, f.value, d) for _, f, d in done]), (StorageUnavailable,)
        )
        for index, reason in failed.items():
            refused.append((done[index][0], Rejected(reason, "archive", "archive_refused")))
        empty = Context()
        return [(record, doc, empty) for index, (record, _, doc) in enumerate(done) if index not in failed], refused

    def observe(self, batch: Batch) -> None:
        """A batch's results are published: learn the cost per frame from its round trip."""
        if batch.load:
            self.deadline.observe((time.perf_counter() - batch.sent) * 1000, batch.load)

    def _drop_stale(self, batch: Batch) -> None:
        """Skip (and count) frames that would outlive CONSUMER_MAX_FRAME_AGE_MS before their result
        exists (see deadline.py); triage checked their age when polled, they may have waited since."""
        if not self.settings.max_frame_age_ms:
            return
        now_us = time.time_ns() // 1000
        ages_ms = [(now_us - frame.meta.capture_ts_us) / 1000 for _, frame in batch.accepted]
        with self._load_lock:
            in_time = self.deadline.in_time(ages_ms, self._frames_in_inference)
        fresh = [item for item, ok in zip(batch.accepted, in_time, strict=True) if ok]
        skipped = len(batch.accepted) - len(fresh)
        if skipped:
            batch.accepted = fresh
            self.counts.stale += skipped
            self.metrics.stale.inc(skipped)

    def _infer(self, images: list[bytes]) -> BatchAnswer:
        self.metrics.frames_inferred.inc(len(images))
        return self.client.infer_batch(images, _batch_links.get())

    def _canary(self) -> BaseException | None:
        """Does the service still answer a frame it processed before with a result? None if so, else the
        error instead. Before this process has such a frame, a small valid JPEG stands in (reference.py)."""
        try:
            answer = self.client.infer_batch([self._known_good or REFERENCE_JPEG])
        except Exception as exc:  # whatever it is, the good frame did not get its result
            return exc
        error = answer.items[0].get("error") if answer.items else {"message": "no item"}
        if error is not None:
            refused = BatchRefused(f"per-item error: {str(error)[:200]}")
            refused.cause = "item_error"
            return refused
        return None
