"""vidpipe.tracing: the Kafka header adapters, the no-op default, the file exporter, sampling."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from vidpipe import tracing
from vidpipe.contract import FrameMeta, Header, parse_frame_headers


def memory_provider(ratio: float = 1.0) -> tuple[TracerProvider, InMemorySpanExporter]:
    provider = tracing.build_provider("test", ratio, out=io.StringIO())
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def test_kafka_headers_round_trip_a_context():
    provider, _ = memory_provider()
    with provider.get_tracer("t").start_as_current_span("publish") as span:
        headers = tracing.inject_headers(FrameMeta("cam", 1, time.time_ns() // 1000, 640, 272).headers())
    sent = span.get_span_context()
    # The span's context replaces the contract's untraced traceparent: one traceparent per record.
    assert [k for k, _ in headers].count(Header.TRACEPARENT) == 1
    received = tracing.span_context_of(tracing.extract_headers(headers))
    assert (received.trace_id, received.span_id, received.trace_flags.sampled) == (sent.trace_id, sent.span_id, True)
    assert received.is_remote
    # The contract still reads it as the frame's traceparent.
    assert parse_frame_headers(headers).traceparent == dict(headers)[Header.TRACEPARENT].decode()


def test_tracestate_travels_too():
    headers = [(Header.TRACEPARENT, b"00-" + b"a" * 32 + b"-" + b"b" * 16 + b"-01"), (Header.TRACESTATE, b"k=v")]
    context = tracing.extract_headers(headers)
    out = tracing.inject_headers([], context)
    assert dict(out) == dict(headers)


@pytest.mark.parametrize("headers", [None, [], [(Header.TRACEPARENT, b"not-a-trace")], [(Header.TRACEPARENT, None)]])
def test_missing_or_invalid_context_extracts_nothing(headers):
    assert not tracing.span_context_of(tracing.extract_headers(headers)).is_valid
    # Nothing valid to carry: nothing is written.
    assert tracing.inject_headers([], tracing.extract_headers(headers)) == []


def test_http_headers_round_trip():
    provider, _ = memory_provider()
    with provider.get_tracer("t").start_as_current_span("client") as span:
        headers = tracing.inject_http({"Content-Type": "x"})
    assert headers["traceparent"].split("-")[2] == format(span.get_span_context().span_id, "016x")
    assert tracing.span_context_of(tracing.extract_http(headers)).trace_id == span.get_span_context().trace_id


def test_no_exporter_is_a_no_op_without_the_sdk():
    """Neither variable set: setup() does nothing, spans are the API's non-recording ones, and the SDK is
    never imported (a fresh interpreter, so other tests' imports do not count)."""
    code = (
        "import sys; from vidpipe import tracing\n"
        "assert tracing.setup('x', 1.0) is False\n"
        "with tracing.tracer().start_as_current_span('s') as span:\n"
        "    assert not span.is_recording() and not span.get_span_context().is_valid\n"
        "    assert tracing.inject_headers([]) == []\n"
        "assert 'opentelemetry.sdk' not in sys.modules, 'SDK imported'\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in (tracing.ENDPOINT_VARIABLE, tracing.TRACES_FILE_VARIABLE)}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=60)
    assert tracing.build_provider("x") is None


def test_traces_file_gets_one_json_line_per_span(tmp_path):
    path = tmp_path / "spans.jsonl"
    provider = tracing.build_provider("frame-publisher", 1.0, traces_file=str(path))
    tracer = provider.get_tracer("t")
    with tracer.start_as_current_span("video.frames.v1 publish", kind=SpanKind.PRODUCER) as parent:
        with tracer.start_as_current_span("child"):
            pass
    provider.shutdown()
    spans = [json.loads(line) for line in path.read_text().splitlines()]
    assert [s["name"] for s in spans] == ["child", "video.frames.v1 publish"]
    assert spans[1]["resource"]["attributes"]["service.name"] == "frame-publisher"
    assert spans[1]["kind"] == "SpanKind.PRODUCER"
    assert spans[0]["parent_id"] == f"0x{parent.get_span_context().span_id:016x}"


def test_setup_reads_the_traces_file_variable(tmp_path):
    path = tmp_path / "spans.jsonl"
    code = (
        "from vidpipe import tracing\n"
        "assert tracing.setup('analytics-service', 1.0) and tracing.setup('again')\n"
        "tracing.tracer().start_span('s').end()\n"
    )
    env = {**os.environ, tracing.TRACES_FILE_VARIABLE: str(path)}
    env.pop(tracing.ENDPOINT_VARIABLE, None)
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=60)
    (span,) = [json.loads(line) for line in path.read_text().splitlines()]
    assert span["resource"]["attributes"]["service.name"] == "analytics-service"


@pytest.mark.parametrize("ratio, recorded", [(0.0, 0), (1.0, 20)])
def test_sampling_ratio_for_roots(ratio, recorded):
    provider, exporter = memory_provider(ratio)
    for _ in range(20):
        provider.get_tracer("t").start_span("root").end()
    assert len(exporter.get_finished_spans()) == recorded


@pytest.mark.parametrize("sampled", [True, False])
def test_children_follow_the_parents_sampled_flag(sampled):
    """Whatever the ratio for roots, a child follows its parent's sampled flag: a frame is traced in every
    service or in none."""
    provider, exporter = memory_provider(0.0 if sampled else 1.0)
    flags = b"01" if sampled else b"00"
    parent = tracing.extract_headers([(Header.TRACEPARENT, b"00-" + b"a" * 32 + b"-" + b"b" * 16 + b"-" + flags)])
    provider.get_tracer("t").start_span("process", context=parent).end()
    assert len(exporter.get_finished_spans()) == (1 if sampled else 0)


def test_a_ratio_outside_0_1_is_refused():
    with pytest.raises(ValueError, match="between 0 and 1"):
        tracing.build_provider("x", 1.5, out=io.StringIO())


def test_kafka_attributes():
    assert tracing.kafka_attributes("t", "process", b"cam", 2, 7, "g") == {
        "messaging.system": "kafka",
        "messaging.destination.name": "t",
        "messaging.operation.name": "process",
        "messaging.operation.type": "process",
        "messaging.kafka.message.key": "cam",
        "messaging.destination.partition.id": "2",
        "messaging.kafka.offset": 7,
        "messaging.consumer.group.name": "g",
    }
    assert tracing.kafka_attributes("t", "publish")["messaging.operation.type"] == "send"


def test_links_to_valid_contexts_only():
    good = tracing.extract_headers([(Header.TRACEPARENT, b"00-" + b"a" * 32 + b"-" + b"b" * 16 + b"-01")])
    links = tracing.links_to([good, tracing.extract_headers(None)])
    assert [link.context.span_id for link in links] == [int("b" * 16, 16)]


def test_an_endpoint_exports_over_otlp_http_in_batches():
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = tracing.build_provider("consumer-service", endpoint="http://127.0.0.1:4318")
    processors = provider._active_span_processor._span_processors
    assert [type(p) for p in processors] == [BatchSpanProcessor]
    assert isinstance(processors[0]._batch_processor._exporter, OTLPSpanExporter)
    provider.shutdown()
