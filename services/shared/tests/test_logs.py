"""Log lines: text by default; with <SERVICE>_LOG_FORMAT=json one JSON object per line that carries the
current trace and span ids, and the HTTP servers' own lines go the same way."""

from __future__ import annotations

import io
import json
import logging

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import use_span

from vidpipe import logs
from vidpipe.http_edge import EdgeSettings, ops_config


@pytest.fixture
def restore_root():
    root = logging.getLogger()
    handlers, level = root.handlers, root.level
    root.handlers = []  # pytest's own handlers stay out of reach (configure_logging replaces and closes)
    yield root
    root.handlers = handlers
    root.setLevel(level)
    logs._json_lines = False


def _line(root: logging.Logger, message: str, *args: object) -> str:
    stream = io.StringIO()
    root.handlers[0].setStream(stream)  # type: ignore[attr-defined]
    logging.getLogger("vidpipe.test").warning(message, *args)
    return stream.getvalue().strip()


def test_json_lines_carry_the_trace_of_the_current_span(restore_root):
    logs.configure_logging("info", "json")
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("frame process") as span:
        doc = json.loads(_line(restore_root, "frame %s of %s", 7, 'cam "a"'))
        context = span.get_span_context()
    assert doc["message"] == 'frame 7 of cam "a"' and doc["level"] == "WARNING" and doc["logger"] == "vidpipe.test"
    assert doc["trace_id"] == format(context.trace_id, "032x") and doc["span_id"] == format(context.span_id, "016x")
    assert doc["time"].endswith("Z")
    outside = json.loads(_line(restore_root, "no frame"))
    assert "trace_id" not in outside, "no current span: no ids"
    with use_span(span):  # an ended span still names its trace when made current again
        assert json.loads(_line(restore_root, "again"))["trace_id"] == doc["trace_id"]


def test_text_by_default_and_uvicorn_keeps_its_own_handlers(restore_root):
    logs.configure_logging("info")
    assert " WARNING vidpipe.test: plain" in _line(restore_root, "plain") and not logs.json_lines()
    assert ops_config(object(), EdgeSettings(), "127.0.0.1", 0, "info").log_config is not None
    logs.configure_logging("info", "json")
    assert ops_config(object(), EdgeSettings(), "127.0.0.1", 0, "info").log_config is None
