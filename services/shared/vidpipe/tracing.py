"""OpenTelemetry tracing, set up once per process: one trace per frame across the four services.

- OTEL_EXPORTER_OTLP_ENDPOINT set: an SDK TracerProvider exports over OTLP/HTTP in batches (the exporter
  reads the other standard OTEL_EXPORTER_OTLP_* variables itself: headers, timeout, certificates).
- VIDPIPE_TRACES_FILE set: each span is written as one JSON line to that file as it ends (tests, debugging).
- Neither: nothing is set up; the API's no-op tracer makes spans cost next to nothing.

Sampling: a trace starts at the publisher, which samples PUBLISHER_TRACE_SAMPLE_RATIO of the frames; every
other span follows its parent's sampled flag (parent-based), so a frame is traced everywhere or nowhere.
A span without a parent (a record from a foreign producer, a request without trace context) is sampled at
the root ratio given to setup().

W3C trace context (traceparent, tracestate) travels in Kafka headers and HTTP headers; the adapters below
read and write Kafka's header lists for opentelemetry's TraceContextTextMapPropagator. FastAPI makes the
server span of each request to an API itself, in the trace its traceparent header names.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping, Sequence
from typing import IO, Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import Getter, Setter
from opentelemetry.trace import Link, SpanContext
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

ENDPOINT_VARIABLE = "OTEL_EXPORTER_OTLP_ENDPOINT"
TRACES_FILE_VARIABLE = "VIDPIPE_TRACES_FILE"
DEFAULT_SAMPLE_RATIO = 0.01
TRACER_NAME = "vidpipe"

KafkaHeaders = Sequence[tuple[str, bytes | None]]

_PROPAGATOR = TraceContextTextMapPropagator()
_setup_lock = threading.Lock()
_provider: Any = None  # the SDK provider this process set up, if any


class KafkaHeadersGetter(Getter[KafkaHeaders]):
    """Reads a Kafka header list ([(name, bytes)]) for the propagator."""

    def get(self, carrier: KafkaHeaders, key: str) -> list[str] | None:
        values = [v.decode("ascii", "replace") for k, v in carrier if k == key and v is not None]
        return values or None

    def keys(self, carrier: KafkaHeaders) -> list[str]:
        return [k for k, _ in carrier]


class KafkaHeadersSetter(Setter[list[tuple[str, bytes]]]):
    """Writes into a Kafka header list, replacing a header of the same name (one traceparent per record)."""

    def set(self, carrier: list[tuple[str, bytes]], key: str, value: str) -> None:
        carrier[:] = [(k, v) for k, v in carrier if k != key]
        carrier.append((key, value.encode("ascii")))


_GETTER = KafkaHeadersGetter()
_SETTER = KafkaHeadersSetter()


def extract_headers(headers: KafkaHeaders | None) -> Context:
    """The trace context a record's headers carry (an empty context when none or invalid)."""
    return _PROPAGATOR.extract(list(headers or ()), getter=_GETTER)


def inject_headers(headers: list[tuple[str, bytes]], context: Context | None = None) -> list[tuple[str, bytes]]:
    """Put the context's span (default: the current one) into the headers, in place; returns them. Without a
    valid span nothing is written, and headers already there stay."""
    _PROPAGATOR.inject(headers, context=context, setter=_SETTER)
    return headers


def extract_http(headers: Mapping[str, str]) -> Context:
    return _PROPAGATOR.extract(dict(headers))


def inject_http(headers: dict[str, str], context: Context | None = None) -> dict[str, str]:
    _PROPAGATOR.inject(headers, context=context)
    return headers


def span_context_of(context: Context) -> SpanContext:
    return trace.get_current_span(context).get_span_context()


def links_to(contexts: Sequence[Context]) -> list[Link]:
    """Links to each valid context's span (a batch span's links to its messages)."""
    return [Link(sc) for sc in (span_context_of(c) for c in contexts) if sc.is_valid]


def kafka_attributes(
    topic: str,
    operation: str,
    key: bytes | None = None,
    partition: int | None = None,
    offset: int | None = None,
    group: str | None = None,
) -> dict[str, str | int]:
    """OpenTelemetry's messaging attributes for a Kafka record; operation is "publish" or "process"."""
    attributes: dict[str, str | int] = {
        "messaging.system": "kafka",
        "messaging.destination.name": topic,
        "messaging.operation.name": operation,
        "messaging.operation.type": "send" if operation == "publish" else operation,
    }
    if key is not None:
        attributes["messaging.kafka.message.key"] = key.decode("utf-8", "replace")
    if partition is not None and partition >= 0:
        attributes["messaging.destination.partition.id"] = str(partition)
    if offset is not None and offset >= 0:
        attributes["messaging.kafka.offset"] = offset
    if group:
        attributes["messaging.consumer.group.name"] = group
    return attributes


def tracer() -> trace.Tracer:
    """The process's tracer: a proxy until setup() runs, a no-op one when tracing is off."""
    return trace.get_tracer(TRACER_NAME)


def _line(span: Any) -> str:
    return str(span.to_json(indent=None)) + "\n"


def build_provider(
    service_name: str,
    sample_ratio: float = DEFAULT_SAMPLE_RATIO,
    endpoint: str | None = None,
    traces_file: str | None = None,
    out: IO[str] | None = None,
) -> Any:
    """An SDK TracerProvider exporting to the endpoint and/or the file (or `out`); None when neither is given,
    so no SDK is even imported. Sampling: parent-based, roots at sample_ratio."""
    if not (endpoint or traces_file or out):
        return None
    # Imported here: a process that does not trace never loads the SDK.
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SimpleSpanProcessor
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    if not 0.0 <= sample_ratio <= 1.0:
        raise ValueError(f"a sample ratio is between 0 and 1, not {sample_ratio}")
    provider = TracerProvider(
        resource=Resource.create({SERVICE_NAME: service_name}),
        sampler=ParentBased(root=TraceIdRatioBased(sample_ratio)),
    )
    if endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        # The exporter appends /v1/traces to OTEL_EXPORTER_OTLP_ENDPOINT itself.
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    if traces_file or out:
        # Line-buffered append: several processes may share a file, and a test reads it while they run.
        stream = out or open(traces_file or "", "a", buffering=1, encoding="utf-8")  # noqa: SIM115 (lives with the process)
        provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter(out=stream, formatter=_line)))
    return provider


def setup(service_name: str, sample_ratio: float = DEFAULT_SAMPLE_RATIO) -> bool:
    """Set up this process's tracing from the environment, once (later calls change nothing); True when
    spans are exported."""
    global _provider
    with _setup_lock:
        if _provider is not None:
            return True
        provider = build_provider(
            service_name,
            sample_ratio,
            os.environ.get(ENDPOINT_VARIABLE) or None,
            os.environ.get(TRACES_FILE_VARIABLE) or None,
        )
        if provider is None:
            return False
        trace.set_tracer_provider(provider)
        _provider = provider
        return True


def shutdown() -> None:
    """Export what is pending (the SDK also does this at interpreter exit)."""
    if _provider is not None:
        _provider.shutdown()
