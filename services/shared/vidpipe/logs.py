"""Log lines as every service writes them: text for a terminal (the default), or one JSON object per line
for a log pipeline (the cluster's agent ships container output to CloudWatch Logs), carrying the current
trace and span ids, so that a log line leads to its frame's trace (vidpipe.tracing).

<SERVICE>_LOG_FORMAT=json selects JSON; the charts set it in every pod.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Literal

import orjson
from opentelemetry import trace

LogFormat = Literal["text", "json"]
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_json_lines = False


class JsonFormatter(logging.Formatter):
    """One line per record: time (UTC, ISO 8601, ms), level, logger, message, trace_id and span_id when a
    recording span is current, the exception's traceback when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        doc: dict[str, Any] = {
            "time": f"{seconds}.{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            doc["trace_id"] = format(context.trace_id, "032x")
            doc["span_id"] = format(context.span_id, "016x")
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(doc, default=str).decode()


def configure_logging(level: str, log_format: LogFormat = "text") -> None:
    """The root logger's one handler, on stderr, in place of any other; call once at start-up."""
    global _json_lines
    _json_lines = log_format == "json"
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if _json_lines else logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)


def json_lines() -> bool:
    """Whether the process writes JSON lines: the HTTP servers then hand their own loggers to the root's."""
    return _json_lines
