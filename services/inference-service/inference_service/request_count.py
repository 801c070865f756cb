"""Counts HTTP responses by endpoint and status, as plain ASGI middleware.

Starlette's BaseHTTPMiddleware (what @app.middleware("http") makes) runs every request through an extra
task and a memory stream, all of it Python holding the GIL: a cost per request paid by every frame sent
alone. This wraps `send` instead. The endpoint label is the matched route's template, or "unmatched":
a label per requested path would let anyone grow /metrics without bound by asking for made-up paths.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

UNMATCHED = "unmatched"


def endpoint_label(scope: Scope) -> str:
    """The route template the router matched (FastAPI puts the route in the scope), else UNMATCHED."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED


class RequestCounter:
    def __init__(self, app: ASGIApp, count: Callable[[str, int], None]):
        self.app = app
        self.count = count

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # what the server answers when the app raises before starting a response

        async def send_counting(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_counting)
        finally:
            self.count(endpoint_label(scope), status)
