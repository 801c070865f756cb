"""A small HTTP server for the Kafka-side services: /healthz, /readyz and /metrics.

Liveness means the main loop made progress recently (a stuck loop gets restarted) and the service has
not declared itself unhealthy (e.g. a dependency down for longer than it will wait quietly); readiness
is whatever the service says it is (e.g. joined its group).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest


class Heartbeat:
    def __init__(self, stale_after_s: float):
        self.stale_after_s = stale_after_s
        self._last = time.monotonic()
        self.ready = False
        self.unhealthy_reason: str | None = None  # set by the service; /healthz answers 503 with it

    def beat(self) -> None:
        self._last = time.monotonic()

    @property
    def alive(self) -> bool:
        return time.monotonic() - self._last < self.stale_after_s and self.unhealthy_reason is None


def serve_health(
    port: int,
    heartbeat: Heartbeat,
    registry: CollectorRegistry,
    host: str = "0.0.0.0",
    details: Callable[[], dict[str, Any]] | None = None,
) -> ThreadingHTTPServer:
    import json

    class Handler(BaseHTTPRequestHandler):
        def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802 (http.server API)
            path = self.path.split("?")[0]
            if path == "/healthz":
                ok = heartbeat.alive
                status = "ok" if ok else "unhealthy" if heartbeat.unhealthy_reason else "stalled"
                body = {
                    "status": status,
                    **({"reason": heartbeat.unhealthy_reason} if heartbeat.unhealthy_reason else {}),
                }
                self._send(200 if ok else 503, json.dumps(body).encode())
            elif path == "/readyz":
                ok = heartbeat.ready and heartbeat.alive
                extra = details() if details else {}
                self._send(200 if ok else 503, json.dumps({"status": "ready" if ok else "not ready", **extra}).encode())
            elif path == "/metrics":
                self._send(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            else:
                self._send(404, b'{"error": {"code": "not_found", "message": "unknown path"}}')

        def log_message(self, *args: Any) -> None:  # probes every few seconds would flood the log
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="health", daemon=True).start()
    return server
