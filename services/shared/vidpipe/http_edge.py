"""The hardened HTTP edge of the services that serve HTTP (inference, analytics).

Three parts, each usable alone:

- EdgeHttpProtocol: uvicorn's httptools protocol with the limits uvicorn lacks. httptools accepts
  headers of any size (one endless header value was read up to 165 MiB) and uvicorn has no header or
  body read timeout; h11's `h11_max_incomplete_event_size` bounds headers but answers 400 and has no
  timeouts either. Here: headers beyond `max_header_bytes` get 431 and the connection is closed
  (nothing beyond the limit is buffered); headers not complete within `header_timeout_s` of the
  connection or the request's first byte, or a body not complete within `body_timeout_s` of its
  headers, get 408 and the connection is closed (a slowloris holds nothing for long); connections
  beyond `max_connections` are closed at once; idle keep-alive connections close after
  `keep_alive_s`; optionally, a connection past `connection_max_age_s` is closed after its next response
  (several processes on one port). Errors are the services' JSON envelope.
- EdgeGuard: ASGI middleware for the API port: a Host allow-list (421 for any other Host: a web page
  cannot reach a `kubectl port-forward` on 127.0.0.1 through DNS rebinding) and, when a token is
  configured, `Authorization: Bearer <token>` compared in constant time (401 otherwise). Optionally a
  browser login: GET /?token=... once answers an HttpOnly, SameSite=Strict session cookie (signed
  with the token, expiring) and a redirect that drops the token from the URL.
- EdgeServers: the API server and the ops server (/healthz, /readyz, /metrics only, for probes and
  Prometheus) in one process and one event loop, stopped together on SIGTERM; or the API server alone on
  a listening socket it inherited (one of several processes serving the same port).

EdgeSettings holds the settings; a service's settings class inherits it, so the variables carry the
service's prefix (INFERENCE_API_TOKEN, ANALYTICS_MAX_HEADER_BYTES...; see env.example).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import ipaddress
import logging
import re
import signal
import socket
import time
from collections.abc import Awaitable, Callable, Generator, Iterable, Mapping, MutableMapping
from dataclasses import dataclass, replace
from types import FrameType
from typing import Any, Self
from urllib.parse import parse_qsl

import orjson
import uvicorn
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

from .logs import json_lines
from .secrets import check_secret_arn, resolve_secret

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# A token travels in a header: visible ASCII, and long enough not to be guessed.
TOKEN_PATTERN = re.compile(r"^[!-~]{16,512}$")
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
HOST_NAME = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*$")
# The browser session of a login (EdgeGuard.login_cookie): how long it lasts.
SESSION_TTL_S = 12 * 3600


# --- settings ----------------------------------------------------------------------------------


class EdgeSettings(BaseSettings):
    """The HTTP edge's settings; a service's settings class inherits them under its own prefix."""

    api_token: SecretStr | None = Field(
        default=None, description="Bearer token the API requires (unset: no authentication, with a warning)"
    )
    api_token_file: str | None = Field(default=None, description="A file holding the token (a mounted Secret)")
    api_token_secret_arn: str | None = Field(
        default=None, description='A Secrets Manager secret holding the token (a JSON secret: its "token" key)'
    )
    allowed_hosts: str = Field(
        default="",
        description="Host names the API answers besides the defaults (localhost, IP addresses, the service's "
        "in-cluster names); comma-separated",
    )
    openapi: bool = Field(default=False, description="Serve /openapi.json on the API port (never /docs or /redoc)")
    max_header_bytes: int = Field(default=16 * 1024, ge=1024, le=1024 * 1024)
    header_timeout_s: float = Field(default=10.0, gt=0.0, le=600.0)
    body_timeout_s: float = Field(default=60.0, gt=0.0, le=3600.0)
    keep_alive_s: int = Field(default=20, ge=1, le=3600)
    max_connections: int = Field(default=128, ge=1, le=100_000)

    @field_validator("api_token_secret_arn")
    @classmethod
    def _arn(cls, value: str | None) -> str | None:
        return check_secret_arn(value, "the value")

    @field_validator("allowed_hosts")
    @classmethod
    def _hosts(cls, value: str) -> str:
        parse_hosts(value)
        return value

    @model_validator(mode="after")
    def _one_token_source(self) -> Self:
        prefix = str(self.model_config.get("env_prefix") or "").upper()
        given = [
            f"{prefix}{name.upper()}"
            for name in ("api_token", "api_token_file", "api_token_secret_arn")
            if getattr(self, name) is not None
        ]
        if len(given) > 1:
            raise ValueError(f"set only one of {', '.join(given)}")
        return self

    @property
    def edge_limits(self) -> EdgeLimits:
        return EdgeLimits(
            max_header_bytes=self.max_header_bytes,
            header_timeout_s=self.header_timeout_s,
            body_timeout_s=self.body_timeout_s,
            max_connections=self.max_connections,
        )

    def resolve_token(self, client: Any = None) -> str | None:
        """The API token from whichever of the three settings is set (a file or Secrets Manager is read
        now), or None. SecretError or ValueError name the setting, never the value (its shape is checked
        here, not by a validator: a settings error would print the value it got)."""
        name = f"{str(self.model_config.get('env_prefix') or '').upper()}API_TOKEN"
        value = self.api_token.get_secret_value() if self.api_token is not None else None
        token = resolve_secret(name, value, self.api_token_file, self.api_token_secret_arn, "token", client)
        if token is not None:
            check_token(token, name)
        return token


def check_token(token: str, setting: str) -> str:
    if not TOKEN_PATTERN.match(token):
        raise ValueError(f"{setting} must be 16 to 512 visible ASCII characters (no spaces)")
    return token


def parse_hosts(value: str) -> tuple[str, ...]:
    """Host names from a comma-separated setting: lower case, no port, checked."""
    hosts: list[str] = []
    for entry in value.split(","):
        host = entry.strip().lower().rstrip(".")
        if not host:
            continue
        if not (HOST_NAME.match(host) or _is_ip(host)):
            raise ValueError(f"{entry.strip()!r} is not a host name (no scheme, port or path)")
        hosts.append(host)
    return tuple(hosts)


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


# --- Host allow-list -------------------------------------------------------------------------------


class HostAllowList:
    """The Host names the API answers to, any port: localhost, any IP address (a page whose origin is an
    IP address is that address: no rebinding), the service's in-cluster names (`svc`, `svc.NS.svc`,
    `svc.NS.svc.cluster.local`) and the extra names configured. `svc.NS` is not a default: a public
    domain could have that shape (inference.example); add it to the setting when clients use it."""

    def __init__(self, service: str, extra: Iterable[str] = ()):
        self.service = service.lower()
        self.names = frozenset({"localhost", self.service, *extra})
        label = _LABEL
        self._cluster = re.compile(rf"^{re.escape(self.service)}\.{label}\.svc(?:\.cluster\.local)?$")

    def allows(self, host_header: str | None) -> bool:
        host = split_host(host_header)
        if host is None:
            return False
        return host in self.names or _is_ip(host) or bool(self._cluster.match(host))


def split_host(value: str | None) -> str | None:
    """The host name of a Host header without its port (lower case, IPv6 unbracketed); None if malformed."""
    if not value:
        return None
    value = value.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return None
        host, rest = value[1:end], value[end + 1 :]
        if not _is_ip(host):
            return None
    else:
        host, _, port = value.partition(":")
        rest = f":{port}" if _ else ""
    if rest and not (rest.startswith(":") and rest[1:].isdigit() and len(rest) <= 6):
        return None
    host = host.rstrip(".")
    return host or None


# --- the guard -------------------------------------------------------------------------------------


def error_document(code: str, message: str, field: str | None = None) -> dict[str, Any]:
    """The one error envelope of every HTTP answer the services give: {"error": {"code", "message", "field"}}."""
    return {"error": {"code": code, "message": message, "field": field}}


def error_body(code: str, message: str, field: str | None = None) -> bytes:
    return orjson.dumps(error_document(code, message, field))


async def send_error(
    send: Send, status: int, code: str, message: str, field: str | None = None, headers: Iterable[tuple[str, str]] = ()
) -> None:
    body = error_body(code, message, field)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"cache-control", b"no-store"),
                (b"x-content-type-options", b"nosniff"),
                *((k.encode("latin-1"), v.encode("latin-1")) for k, v in headers),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _digest(value: str | bytes) -> bytes:
    return hashlib.sha256(value.encode("latin-1") if isinstance(value, str) else value).digest()


class EdgeGuard:
    """Host allow-list, then bearer token (when one is set), for every HTTP request of the wrapped app.

    login_cookie: also accept a session cookie of that name, which GET {login_path}?token=<token>
    sets (HttpOnly, SameSite=Strict, signed with the token, SESSION_TTL_S long) before redirecting
    to the same path without the token: the way in for a browser."""

    def __init__(
        self,
        app: ASGIApp,
        hosts: HostAllowList,
        token: str | None,
        login_cookie: str | None = None,
        login_path: str = "/",
        clock: Callable[[], float] = time.time,
    ):
        self.app = app
        self.hosts = hosts
        self._token_digest = _digest(token) if token is not None else None
        # The key that signs sessions: derived from the token, so a new token ends every session.
        self._session_key = _digest(b"vidpipe-session|" + token.encode()) if token is not None else b""
        self.login_cookie = login_cookie
        self.login_path = login_path
        self.clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, send)
            return
        if scope["type"] != "http":  # no WebSockets here
            await send({"type": "websocket.close", "code": 1008})
            return
        headers = _headers(scope)
        host = headers.get("host")
        if not self.hosts.allows(host):
            shown = (host or "none")[:100]
            await send_error(send, 421, "unknown_host", f"this service does not answer to Host {shown!r}", "Host")
            return
        if self._token_digest is None or self._authorized(headers):
            await self.app(scope, receive, send)
            return
        if self.login_cookie and scope["method"] == "GET" and scope["path"] == self.login_path:
            given = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1"))).get("token")
            if given is not None:
                if hmac.compare_digest(_digest(given), self._token_digest):
                    await self._login(scope, send)
                    return
                await send_error(send, 401, "unauthorized", "the token in the link is not this service's", "token")
                return
        how = "send Authorization: Bearer <token>"
        if self.login_cookie:
            how += f", or open {self.login_path}?token=<token> once in the browser"
        await send_error(
            send, 401, "unauthorized", f"this API needs its token: {how}", "Authorization",
            [("www-authenticate", 'Bearer realm="vidpipe"')],
        )  # fmt: skip

    def _authorized(self, headers: Mapping[str, str]) -> bool:
        assert self._token_digest is not None
        scheme, _, credentials = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and credentials:
            return hmac.compare_digest(_digest(credentials.strip()), self._token_digest)
        if self.login_cookie:
            session = _cookie(headers.get("cookie", ""), self.login_cookie)
            return session is not None and self._valid_session(session)
        return False

    def session_value(self, expires: int) -> str:
        signature = hmac.new(self._session_key, str(expires).encode(), hashlib.sha256).hexdigest()
        return f"{expires}.{signature}"

    def _valid_session(self, value: str) -> bool:
        expires, _, signature = value.partition(".")
        if not expires.isdigit() or len(expires) > 12 or int(expires) <= self.clock():
            return False
        expected = self.session_value(int(expires)).partition(".")[2]
        return hmac.compare_digest(signature.encode("latin-1", "replace"), expected.encode())

    async def _login(self, scope: Scope, send: Send) -> None:
        assert self.login_cookie is not None
        expires = int(self.clock()) + SESSION_TTL_S
        cookie = (
            f"{self.login_cookie}={self.session_value(expires)}; Max-Age={SESSION_TTL_S}; Path=/; HttpOnly; "
            "SameSite=Strict"
        )
        if scope.get("scheme") == "https":
            cookie += "; Secure"
        await send(
            {
                "type": "http.response.start",
                "status": 303,
                "headers": [
                    (b"location", self.login_path.encode()),  # the same page, without the token
                    (b"set-cookie", cookie.encode()),
                    (b"cache-control", b"no-store"),
                    (b"referrer-policy", b"no-referrer"),
                    (b"content-length", b"0"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": b""})


def _headers(scope: Scope) -> dict[str, str]:
    """Request headers by lower-case name (a repeated header: its first value)."""
    found: dict[str, str] = {}
    for name, value in scope.get("headers", ()):
        found.setdefault(name.decode("latin-1").lower(), value.decode("latin-1"))
    return found


def _cookie(header: str, name: str) -> str | None:
    for part in header.split(";"):
        key, sep, value = part.strip().partition("=")
        if sep and key == name:
            return value.strip()
    return None


# --- the ops app -----------------------------------------------------------------------------------

Probe = Callable[[], Awaitable[tuple[int, bytes, str]]]


def ops_app(probes: Mapping[str, Probe]) -> ASGIApp:
    """The ops port's app: GET (or HEAD) of exactly the given paths, each answering (status, body,
    content type); anything else 404, JSON. No Host check or token: kubelet probes and Prometheus
    scrape by pod IP, and NetworkPolicy decides who reaches this port."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":  # nothing to start: the API app owns start-up and shutdown
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] != "http":
            return
        probe = probes.get(scope["path"])
        if probe is None:
            await send_error(send, 404, "not_found", f"no {scope['path'][:100]} here: this port serves "
                             f"{', '.join(sorted(probes))}")  # fmt: skip
            return
        if scope["method"] not in ("GET", "HEAD"):
            await send_error(send, 405, "method_not_allowed", "only GET", None, [("allow", "GET, HEAD")])
            return
        status, body, kind = await probe()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", kind.encode()),
                    (b"content-length", str(len(body)).encode()),
                    (b"cache-control", b"no-store"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body if scope["method"] == "GET" else b""})

    return app


def json_probe(answer: Callable[[], tuple[int, Any]]) -> Probe:
    """A probe from a function returning (status, JSON-able document)."""

    async def probe() -> tuple[int, bytes, str]:
        status, document = answer()
        return status, orjson.dumps(document), "application/json"

    return probe


# --- the protocol ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class EdgeLimits:
    max_header_bytes: int = 16 * 1024
    header_timeout_s: float = 10.0
    body_timeout_s: float = 60.0
    max_connections: int = 128
    # Set: a connection this old answers its next request with `Connection: close`, so that a client that
    # keeps a few connections open reconnects now and then, and each new connection goes to whichever of
    # several processes sharing the listening socket accepts it first (an idle one sooner).
    connection_max_age_s: float | None = None


class EdgeConfig(uvicorn.Config):
    """uvicorn's Config with the edge's limits, which EdgeHttpProtocol reads."""

    def __init__(self, app: Any, limits: EdgeLimits, **kwargs: Any):
        kwargs.setdefault("http", EdgeHttpProtocol)
        kwargs.setdefault("proxy_headers", False)  # nothing proxies these services: trust no X-Forwarded-*
        kwargs.setdefault("server_header", False)
        kwargs.setdefault("ws", "none")
        super().__init__(app, **kwargs)
        self.edge_limits = limits


def _error_bytes(status: int, code: str, message: str, default_headers: list[tuple[bytes, bytes]]) -> bytes:
    body = error_body(code, message)
    parts = [STATUS_LINE[status]]
    for name, value in default_headers:
        parts.extend([name, b": ", value, b"\r\n"])
    parts.extend(
        [
            b"content-type: application/json\r\ncontent-length: ",
            str(len(body)).encode(),
            b"\r\nconnection: close\r\n\r\n",
            body,
        ]
    )
    return b"".join(parts)


class EdgeHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with bounded headers, header and body read timeouts and a connection
    cap (see the module's docstring). Header bytes are fed to the parser at most up to the limit, so an
    endless header never grows a buffer beyond it."""

    def __init__(
        self,
        config: uvicorn.Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        limits = getattr(config, "edge_limits", None)
        self.limits: EdgeLimits = limits if isinstance(limits, EdgeLimits) else EdgeLimits()
        self._in_headers = True
        self._header_bytes = 0
        self._header_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._opened = time.monotonic()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]  # as uvicorn's
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            log.warning("%d connections open, limit %d: closing a new one", len(self.connections) - 1,
                        self.limits.max_connections)  # fmt: skip
            transport.close()
            return
        self._header_timer = self.loop.call_later(self.limits.header_timeout_s, self._headers_too_slow)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        while data and self._in_headers and not self.transport.is_closing():
            room = self.limits.max_header_bytes - self._header_bytes
            if room <= 0:
                self._refuse(431, "headers_too_large", f"request headers exceed {self.limits.max_header_bytes} bytes")
                return
            piece, data = data[:room], data[room:]
            self._header_bytes += len(piece)
            super().data_received(piece)
        if data and not self.transport.is_closing():
            super().data_received(data)
        if self._in_headers and self._header_bytes >= self.limits.max_header_bytes and not self.transport.is_closing():
            self._refuse(431, "headers_too_large", f"request headers exceed {self.limits.max_header_bytes} bytes")

    # httptools parser callbacks
    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.limits.header_timeout_s, self._headers_too_slow)

    def on_headers_complete(self) -> None:
        self._in_headers = False
        self._header_bytes = 0
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        super().on_headers_complete()
        max_age = self.limits.connection_max_age_s
        if max_age is not None and self.cycle is not None and time.monotonic() - self._opened > max_age:
            self.cycle.keep_alive = False  # this response says Connection: close
        self._body_timer = self.loop.call_later(self.limits.body_timeout_s, self._body_too_slow)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None
        self._in_headers = True

    # timeouts and refusals
    def _cancel_timers(self) -> None:
        for timer in (self._header_timer, self._body_timer):
            if timer is not None:
                timer.cancel()
        self._header_timer = self._body_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if self._in_headers and not self.transport.is_closing():
            self._refuse(
                408, "request_timeout", f"request headers not complete within {self.limits.header_timeout_s:g}s"
            )

    def _body_too_slow(self) -> None:
        self._body_timer = None
        if not self.transport.is_closing():
            self._refuse(408, "request_timeout", f"request body not complete within {self.limits.body_timeout_s:g}s")

    def _refuse(self, status: int, code: str, message: str) -> None:
        """Answer `status` (unless a response is already under way) and close the connection. The request
        being read, if any, sees a disconnect: its app stops waiting for a body that will not come."""
        cycle = self.cycle
        busy = cycle is not None and cycle.response_started and not cycle.response_complete
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True
            cycle.message_event.set()
        if not busy:
            self.transport.write(_error_bytes(status, code, message, self.server_state.default_headers))
        self._cancel_timers()
        self.transport.close()


# --- two servers, one process ----------------------------------------------------------------------


class EdgeServer(uvicorn.Server):
    """A uvicorn server whose signals its owner handles (uvicorn's own capture is per server, and the
    last one installed would stop only its own)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class EdgeServers:
    """The API server and the ops server on one event loop. SIGTERM or SIGINT (or stop()) stop the API
    server first: it finishes in-flight requests and runs its app's shutdown; then the ops server stops.
    Either server ending (a port already taken...) ends both. Without `ops`, the API server alone; with
    `sockets`, it serves those (already bound) instead of binding its host and port."""

    def __init__(
        self, api: uvicorn.Config, ops: uvicorn.Config | None, sockets: list[socket.socket] | None = None
    ) -> None:
        self.api = EdgeServer(api)
        self.ops = EdgeServer(ops) if ops is not None else None
        self.sockets = sockets

    def stop(self) -> None:
        """Thread-safe: the servers poll the flag."""
        self.api.should_exit = True

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.api.should_exit and signum == signal.SIGINT:
            self.api.force_exit = True
            if self.ops is not None:
                self.ops.force_exit = True
        self.stop()

    def run(self) -> None:
        with asyncio.Runner(loop_factory=self.api.config.get_loop_factory()) as runner:
            runner.run(self.serve())

    async def serve(self) -> None:
        handled = (signal.SIGINT, signal.SIGTERM)
        previous = {sig: signal.signal(sig, self._on_signal) for sig in handled}
        try:
            ops = asyncio.create_task(self.ops.serve(), name="ops-server") if self.ops is not None else None
            api = asyncio.create_task(self.api.serve(self.sockets), name="api-server")
            await asyncio.wait([t for t in (api, ops) if t is not None], return_when=asyncio.FIRST_COMPLETED)
            self.api.should_exit = True
            await api
            if self.ops is not None and ops is not None:
                self.ops.should_exit = True
                await ops
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def api_config(
    app: Any,
    settings: EdgeSettings,
    host: str,
    port: int,
    log_level: str,
    graceful_s: int,
    connection_max_age_s: float | None = None,
    **kwargs: Any,
) -> EdgeConfig:
    return EdgeConfig(
        app,
        replace(settings.edge_limits, connection_max_age_s=connection_max_age_s),
        host=host,
        port=port,
        log_level=log_level,
        timeout_graceful_shutdown=graceful_s,
        timeout_keep_alive=settings.keep_alive_s,
        access_log=False,
        **{**_log_config(), **kwargs},  # a caller's log_config wins
    )


def ops_config(app: ASGIApp, settings: EdgeSettings, host: str, port: int, log_level: str) -> EdgeConfig:
    # Probes and scrapes are few and small: the same limits, fewer connections are plenty.
    limits = EdgeLimits(
        max_header_bytes=settings.max_header_bytes,
        header_timeout_s=settings.header_timeout_s,
        body_timeout_s=min(settings.body_timeout_s, 10.0),
        max_connections=32,
    )
    return EdgeConfig(
        app,
        limits,
        host=host,
        port=port,
        log_level=log_level,
        lifespan="off",
        timeout_graceful_shutdown=5,
        timeout_keep_alive=settings.keep_alive_s,
        access_log=False,
        **_log_config(),
    )


def _log_config() -> dict[str, Any]:
    """With JSON log lines, uvicorn's loggers keep no handlers of their own: their lines reach the root's."""
    return {"log_config": None} if json_lines() else {}


def guard_options(
    service: str, settings: EdgeSettings, token: str | None, login_cookie: str | None = None
) -> dict[str, Any]:
    """EdgeGuard's keyword arguments from the settings (app.add_middleware(EdgeGuard, **options));
    warns when no token is set."""
    if token is None:
        prefix = str(settings.model_config.get("env_prefix") or "").upper()
        log.warning("%sAPI_TOKEN is not set: the %s API accepts requests without authentication", prefix, service)
    hosts = HostAllowList(service, parse_hosts(settings.allowed_hosts))
    return {"hosts": hosts, "token": token, "login_cookie": login_cookie}
