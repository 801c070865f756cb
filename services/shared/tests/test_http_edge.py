"""vidpipe.http_edge: the guard (Host allow-list, token, browser login) as a pure ASGI core, and the
hardened protocol through real uvicorn on a loopback socket, driven with raw sockets for the hostile
cases (an endless header, a slowloris on headers or body, a flood of connections)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import threading
import time

import pytest
import uvicorn
from pydantic import ValidationError

from tools.harness.processes import free_port
from vidpipe.http_edge import (
    SESSION_TTL_S,
    EdgeConfig,
    EdgeGuard,
    EdgeLimits,
    EdgeServers,
    EdgeSettings,
    HostAllowList,
    json_probe,
    ops_app,
    parse_hosts,
    split_host,
)
from vidpipe.secrets import SecretError

TOKEN = "an-api-token-for-tests-0123456789"


class Settings(EdgeSettings):
    model_config = {"env_prefix": "EDGETEST_"}


# --- Host allow-list -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "host, allowed",
    [
        ("localhost:8082", True),
        ("LOCALHOST", True),
        ("127.0.0.1:8080", True),
        ("[::1]:8082", True),
        ("10.1.2.3", True),  # any IP literal: a page whose origin is an IP address cannot rebind it
        ("analytics", True),
        ("analytics:8082", True),
        ("analytics.vidpipe.svc", True),
        ("analytics.vidpipe.svc.cluster.local:8082", True),
        ("analytics.", True),
        ("analytics.vidpipe", False),  # could be a public domain: only when configured
        ("evil.example", False),
        ("evil.example:8082", False),
        ("analytics.evil.example", False),
        ("localhost.evil.example", False),
        ("127.0.0.1.evil.example", False),
        ("inference.vidpipe.svc", False),  # another service's name
        ("analytics.a.b.svc", False),
        ("[::1", False),
        ("[evil]:80", False),
        ("localhost:80:80", False),
        ("localhost:http", False),
        ("", False),
        (None, False),
    ],
)
def test_the_host_allow_list(host, allowed):
    assert HostAllowList("analytics").allows(host) is allowed


def test_extra_hosts_extend_the_defaults():
    hosts = HostAllowList("analytics", parse_hosts(" analytics.vidpipe, Live.Example.COM ,"))
    assert hosts.allows("analytics.vidpipe:8082") and hosts.allows("live.example.com")
    assert hosts.allows("localhost") and not hosts.allows("example.com")
    assert split_host("[::1]:80") == "::1" and split_host("a.b.:1") == "a.b"
    for bad in ("http://x", "x:80", "x/y", "a b"):
        with pytest.raises(ValueError, match="not a host name"):
            parse_hosts(bad)


# --- settings ---------------------------------------------------------------------------------------


def test_token_settings_name_the_variable_at_fault(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGETEST_API_TOKEN", "short")
    with pytest.raises(ValueError, match="EDGETEST_API_TOKEN must be 16 to 512 visible ASCII") as refused:
        Settings().resolve_token()
    assert "short" not in str(refused.value)  # a token is never printed, even a bad one
    monkeypatch.setenv("EDGETEST_API_TOKEN", TOKEN)
    monkeypatch.setenv("EDGETEST_API_TOKEN_FILE", str(tmp_path / "token"))
    with pytest.raises(ValidationError, match="set only one of EDGETEST_API_TOKEN, EDGETEST_API_TOKEN_FILE"):
        Settings()
    monkeypatch.delenv("EDGETEST_API_TOKEN")
    (tmp_path / "token").write_text(TOKEN + "\n")
    assert Settings().resolve_token() == TOKEN  # the mounted Secret's file, stripped
    (tmp_path / "token").write_text("with a space in it, long enough\n")
    with pytest.raises(ValueError, match="EDGETEST_API_TOKEN must be"):
        Settings().resolve_token()
    (tmp_path / "token").unlink()
    with pytest.raises(SecretError, match="EDGETEST_API_TOKEN_FILE"):
        Settings().resolve_token()
    monkeypatch.delenv("EDGETEST_API_TOKEN_FILE")
    monkeypatch.setenv("EDGETEST_API_TOKEN_SECRET_ARN", "not-an-arn")
    with pytest.raises(ValidationError, match="Secrets Manager secret ARN"):
        Settings()
    monkeypatch.setenv("EDGETEST_ALLOWED_HOSTS", "https://x")
    monkeypatch.delenv("EDGETEST_API_TOKEN_SECRET_ARN")
    with pytest.raises(ValidationError, match="allowed_hosts"):
        Settings()
    monkeypatch.delenv("EDGETEST_ALLOWED_HOSTS")
    assert Settings().resolve_token() is None
    assert TOKEN not in repr(Settings(api_token=TOKEN))  # never printed with the settings


def test_a_token_from_secrets_manager_json_or_plain(monkeypatch):
    class FakeSecrets:
        def __init__(self, value):
            self.value = value

        def get_secret_value(self, SecretId):  # noqa: N803 (boto3's spelling)
            return {"SecretString": self.value}

    arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:vidpipe-api-token-AbCdEf"
    settings = Settings(api_token_secret_arn=arn)
    assert settings.resolve_token(FakeSecrets(TOKEN)) == TOKEN
    assert settings.resolve_token(FakeSecrets(f'{{"token": "{TOKEN}"}}')) == TOKEN


# --- the guard ---------------------------------------------------------------------------------------


async def _app(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"inside"})


def call(guard, path="/api/x", headers=(), method="GET", query=b""):
    """(status, headers, body) of one request through the guard."""
    sent: list[dict] = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "query_string": query,
        "scheme": "http",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers],
    }
    asyncio.run(guard(scope, receive, send))
    start = sent[0]
    return (
        start["status"],
        {k.decode(): v.decode() for k, v in start["headers"]},
        b"".join(m.get("body", b"") for m in sent[1:]),
    )


def guard(token=TOKEN, login=None, clock=time.time):
    return EdgeGuard(_app, HostAllowList("analytics"), token, login_cookie=login, clock=clock)


def test_no_token_configured_lets_allowed_hosts_in_and_refuses_others():
    assert call(guard(None), headers=[("Host", "localhost:8082")])[0] == 200
    status, headers, body = call(guard(None), headers=[("Host", "rebound.example:8082")])
    assert status == 421 and headers["content-type"] == "application/json"
    assert b'"code":"unknown_host"' in body and b'"field":"Host"' in body
    assert call(guard(None))[0] == 421  # no Host at all


@pytest.mark.parametrize(
    "authorization, status",
    [
        (None, 401),
        (f"Bearer {TOKEN}", 200),
        (f"bearer {TOKEN}", 200),
        (f"Bearer {TOKEN}x", 401),
        (f"Bearer {TOKEN[:-1]}", 401),
        (f"Basic {TOKEN}", 401),
        ("Bearer", 401),
        ("Bearer ", 401),
    ],
)
def test_the_bearer_token(authorization, status):
    headers = [("Host", "localhost")] + ([("Authorization", authorization)] if authorization else [])
    answer = call(guard(), headers=headers)
    assert answer[0] == status
    if status == 401:
        assert answer[1]["www-authenticate"].startswith("Bearer") and b'"code":"unauthorized"' in answer[2]
        assert TOKEN.encode() not in answer[2]


def test_the_host_is_checked_before_the_token():
    status, _, _ = call(guard(), headers=[("Host", "evil.example"), ("Authorization", f"Bearer {TOKEN}")])
    assert status == 421


def test_the_browser_login_sets_a_session_cookie_and_drops_the_token_from_the_url():
    now = [1_800_000_000.0]
    edge = guard(login="vidpipe_live", clock=lambda: now[0])
    host = [("Host", "localhost:8082")]
    status, headers, _ = call(edge, "/", host, query=f"token={TOKEN}".encode())
    assert status == 303 and headers["location"] == "/"
    cookie = headers["set-cookie"]
    assert cookie.startswith("vidpipe_live=") and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert f"Max-Age={SESSION_TTL_S}" in cookie and TOKEN not in cookie and "Secure" not in cookie
    session = cookie.split(";")[0]
    assert call(edge, "/api/streams", host + [("Cookie", f"other=1; {session}")])[0] == 200
    # A forged, altered or expired session is no session.
    value = session.split("=", 1)[1]
    expires, signature = value.split(".")
    for forged in (f"{int(expires) + 1000}.{signature}", f"{expires}.{'0' * 64}", "garbage", ""):
        assert call(edge, "/api/streams", host + [("Cookie", f"vidpipe_live={forged}")])[0] == 401
    now[0] += SESSION_TTL_S + 1
    assert call(edge, "/api/streams", host + [("Cookie", session)])[0] == 401
    # A wrong token in the link is refused; the token in a link works only on the page, not the API.
    assert call(edge, "/", host, query=b"token=wrong-token-of-some-length")[0] == 401
    assert call(edge, "/api/streams", host, query=f"token={TOKEN}".encode())[0] == 401
    # A session signed for another token is refused (a new token ends every session).
    other = guard(token="another-token-for-the-tests-42", login="vidpipe_live", clock=lambda: now[0])
    fresh = call(edge, "/", host, query=f"token={TOKEN}".encode())[1]["set-cookie"].split(";")[0]
    assert call(other, "/api/streams", host + [("Cookie", fresh)])[0] == 401


def test_lifespan_passes_through_and_websockets_are_closed():
    seen = []

    async def app(scope, receive, send):
        seen.append(scope["type"])

    edge = EdgeGuard(app, HostAllowList("inference"), TOKEN)
    sent = []

    async def send(message):
        sent.append(message)

    asyncio.run(edge({"type": "lifespan"}, None, send))
    asyncio.run(edge({"type": "websocket", "headers": []}, None, send))
    assert seen == ["lifespan"] and sent == [{"type": "websocket.close", "code": 1008}]


# --- the protocol, through real uvicorn ----------------------------------------------------------------


async def echo_size(scope, receive, send):
    """Reads the whole body, answers its size; records a disconnect."""
    if scope["type"] != "http":
        return
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            DISCONNECTS.append(size)
            return
        size += len(message.get("body", b""))
        if not message.get("more_body"):
            break
    body = str(size).encode()
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", str(len(body)).encode())]}
    )
    await send({"type": "http.response.body", "body": body})


DISCONNECTS: list[int] = []
LIMITS = EdgeLimits(max_header_bytes=8192, header_timeout_s=0.5, body_timeout_s=0.8, max_connections=6)


@pytest.fixture(scope="module")
def server():
    port = free_port()
    config = EdgeConfig(echo_size, LIMITS, host="127.0.0.1", port=port, lifespan="off", log_level="error",
                        timeout_keep_alive=1)  # fmt: skip
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)  # not the main thread: no signal handlers
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    yield port
    server.should_exit = True
    thread.join(10)


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.settimeout(5)
    return sock


def read_until_closed(sock: socket.socket) -> bytes:
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            break
        if not chunk:
            break
        data += chunk
    sock.close()
    return data


def test_a_normal_request_pipelined_requests_and_a_large_body_are_served(server):
    sock = connect(server)
    body = b"x" * 3_000_000
    sock.sendall(
        b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"
        + b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3000000\r\nConnection: close\r\n\r\n"
        + body
    )
    answer = read_until_closed(sock)
    assert answer.count(b"HTTP/1.1 200 OK") == 2 and answer.endswith(b"3000000")


def test_an_endless_header_gets_431_and_the_connection_is_closed(server):
    sock = connect(server)
    sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Endless: ")
    sent = 0
    try:
        while sent < 64 * 1024 * 1024:
            sock.sendall(b"a" * 65536)
            sent += 65536
    except (ConnectionResetError, BrokenPipeError):
        pass
    assert sent < 8 * 1024 * 1024, "the server kept reading"
    answer = read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 431 ") and b'"code":"headers_too_large"' in answer


def test_headers_split_across_reads_up_to_the_limit_are_accepted(server):
    sock = connect(server)
    header = b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Big: " + b"b" * 7000 + b"\r\nConnection: close\r\n\r\n"
    for k in range(0, len(header), 1000):
        sock.sendall(header[k : k + 1000])
        time.sleep(0.01)
    assert read_until_closed(sock).startswith(b"HTTP/1.1 200 ")


@pytest.mark.parametrize(
    "opening, expected",
    [
        (b"", b"request headers not complete"),  # connects, says nothing
        (b"GET / HTTP/1.1\r\nHost: local", b"request headers not complete"),  # a slowloris
        (b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 268435456\r\n\r\nabc", b"request body not complete"),
    ],
)
def test_a_client_that_stops_sending_is_cut_off_with_408(server, opening, expected):
    DISCONNECTS.clear()
    sock = connect(server)
    started = time.monotonic()
    sock.sendall(opening)
    answer = read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 408 ") and expected in answer, answer[:300]
    assert time.monotonic() - started < 4  # cut off at its timeout, not at the client's leisure
    if b"POST" in opening:
        deadline = time.monotonic() + 2
        while not DISCONNECTS and time.monotonic() < deadline:
            time.sleep(0.02)
        assert DISCONNECTS == [3], "the app saw the disconnect and stopped waiting for the body"


def test_connections_beyond_the_cap_are_closed_and_later_ones_served(server):
    held = [connect(server) for _ in range(LIMITS.max_connections)]
    extra = connect(server)
    extra.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
    assert read_until_closed(extra) == b""
    for sock in held:
        sock.close()
    time.sleep(0.2)
    again = connect(server)
    again.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
    assert read_until_closed(again).startswith(b"HTTP/1.1 200 ")


def test_an_idle_keep_alive_connection_is_closed(server):
    sock = connect(server)
    sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
    started = time.monotonic()
    answer = read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 200 ") and answer.count(b"HTTP/1.1") == 1
    assert time.monotonic() - started < 4


# --- the ops app and both servers --------------------------------------------------------------------


def test_the_ops_app_serves_its_paths_only():
    from fastapi.testclient import TestClient

    client = TestClient(ops_app({"/healthz": json_probe(lambda: (200, {"status": "ok"}))}))
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.head("/healthz").status_code == 200
    assert client.get("/v1/infer").status_code == 404 and client.get("/v1/infer").json()["error"]["code"] == "not_found"
    assert client.post("/healthz").status_code == 405


def test_sigterm_stops_both_servers_gracefully():
    api_port, ops_port = free_port(), free_port()
    api = EdgeConfig(echo_size, LIMITS, host="127.0.0.1", port=api_port, lifespan="off", log_level="error")
    ops = EdgeConfig(
        ops_app({"/healthz": json_probe(lambda: (200, {"status": "ok"}))}), LIMITS, host="127.0.0.1",
        port=ops_port, lifespan="off", log_level="error",
    )  # fmt: skip
    servers = EdgeServers(api, ops)
    answers: dict[str, bytes] = {}

    def client():
        deadline = time.monotonic() + 10
        while not (servers.api.started and servers.ops.started) and time.monotonic() < deadline:
            time.sleep(0.02)
        for name, port, path in (("api", api_port, "/"), ("ops", ops_port, "/healthz")):
            sock = connect(port)
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())
            answers[name] = read_until_closed(sock)
        os.kill(os.getpid(), signal.SIGTERM)

    before = signal.getsignal(signal.SIGTERM)
    threading.Thread(target=client, daemon=True).start()
    servers.run()  # returns: SIGTERM was a graceful stop, not an exit
    assert answers["api"].startswith(b"HTTP/1.1 200 ") and answers["ops"].endswith(b'{"status":"ok"}')
    assert signal.getsignal(signal.SIGTERM) is before
    for port in (api_port, ops_port):
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=1)
