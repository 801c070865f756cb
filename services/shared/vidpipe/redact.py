"""Camera credentials never leave the publisher: one redaction rule for every URL it shows.

`redact_url` keeps scheme, host, port and path and replaces the userinfo with `***@`, every query
value with `***` (a bare query token too) and every `name=value` value in the path with `***` (DVRs
take credentials there: `/user=admin_password=secret_channel=1_stream=0.sdp`, `/;user=admin;pwd=x`);
the fragment, if any, becomes `#***`. Anything that is not `scheme://...` (a file path, a webcam index)
is returned unchanged.

Parsing is deliberately conservative, erring towards hiding too much: the userinfo ends at the last
'@' before the query (so an unencoded '@', ':' or '/' in a password stays hidden), and an authority
whose "port" is not a number (an unencoded '?' or '#' cut the password short) is hidden whole.

`Redactor` applies the rule to free text (log lines, exception messages, OpenCV and FFmpeg output)
and also removes the known secret parts of one source URL wherever they appear, raw or
percent-decoded. `StderrScrubber` routes the process's stdout and stderr file descriptors through it,
so native libraries' messages are covered as well as Python's.
"""

from __future__ import annotations

import os
import re
import sys
import threading
from urllib.parse import unquote

MASK = "***"
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
# A URL inside free text: scheme:// and everything up to whitespace or a quote/bracket that ends it.
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>`]+")
_HOST_PORT = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~%!$&'()*+,;=-]*)(:\d*)?$")
# Fragments shorter than this are not scrubbed as free text (they would blank out ordinary words);
# they are still hidden wherever they sit inside a URL.
MIN_SECRET_LENGTH = 4
# A name=value parameter inside a URL path. Parameters are separated by '/', ';', '&' or, DVR style, '_':
# a value runs to the next '/', ';', '&' or '_name=' (so a password may hold '_'), '?' and '#' having been
# split off already. The name starts at a segment or parameter boundary.
_PATH_PARAM = re.compile(r"(?<![A-Za-z0-9.-])([A-Za-z][A-Za-z0-9_.-]*)=((?:(?!_[A-Za-z][A-Za-z0-9.-]*=)[^/;&])*)")
# Parameter names that hold credentials (substrings, lower case): their values are also scrubbed from free
# text. Other path values are hidden inside URLs only, so that "main" or "h264" stay readable in logs.
_CREDENTIAL_NAMES = re.compile(r"user|usr|login|pass|pwd|psw|pw|token|auth|key|secret|sig|session|sid|cred|code")


def split_url(url: str) -> tuple[str, str, str, str, str] | None:
    """(scheme, userinfo or '', host[:port], path, query-with-fragment) or None when not a URL."""
    match = _SCHEME.match(url)
    if not match:
        return None
    scheme, rest = match.group(1), url[match.end() :]
    # Userinfo: up to the last '@' that comes before the query (a path rarely holds '@'; a password may).
    before_query = rest.split("?", 1)[0].split("#", 1)[0]
    at = before_query.rfind("@")
    userinfo = rest[:at] if at >= 0 else ""
    rest = rest[at + 1 :] if at >= 0 else rest
    end = len(rest)
    for stop in "/?#":
        position = rest.find(stop)
        if position >= 0:
            end = min(end, position)
    authority, rest = rest[:end], rest[end:]
    path, tail = rest, ""
    for stop in "?#":
        position = path.find(stop)
        if position >= 0:
            path, tail = path[:position], path[position:]
            break
    return scheme, userinfo, authority, path, tail


def _redact_tail(tail: str) -> str:
    """'?a=1&b=2#frag' -> '?a=***&b=***#***'."""
    query, _, fragment = tail.partition("#")
    out = ""
    if query.startswith("?"):
        parts = []
        for item in re.split(r"([&;])", query[1:]):
            if item in ("&", ";") or item == "":
                parts.append(item)
            elif "=" in item:
                parts.append(item.split("=", 1)[0] + "=" + MASK)
            else:
                parts.append(MASK)
        out = "?" + "".join(parts)
    if "#" in tail:
        out += "#" + (MASK if fragment else "")
    return out


def _redact_path(path: str) -> str:
    """'/user=admin_password=x_channel=1' -> '/user=***_password=***_channel=***'."""
    return _PATH_PARAM.sub(lambda m: f"{m.group(1)}={MASK}", path)


def path_parameters(path: str) -> list[tuple[str, str]]:
    """The (name, value) parameters in a URL path, as _redact_path finds them."""
    return [(m.group(1), m.group(2)) for m in _PATH_PARAM.finditer(path)]


def redact_url(url: str) -> str:
    """The URL with credentials, query values and path parameter values replaced by ***; non-URLs unchanged."""
    parts = split_url(url)
    if parts is None:
        return url
    scheme, userinfo, authority, path, tail = parts
    if not _HOST_PORT.match(authority) or (
        ":" in authority and not authority.startswith("[") and not authority.rpartition(":")[2].isdigit()
    ):
        # Not host[:port]: part of a password (cut short by an unencoded '?', '#' or '/') may be in it.
        return f"{scheme}://{MASK}" + ("" if not (path or tail) else "/" + MASK)
    shown = f"{scheme}://" + (f"{MASK}@" if userinfo else "") + authority + _redact_path(path)
    return shown + _redact_tail(tail)


def url_secrets(url: str) -> set[str]:
    """The secret parts of one URL (userinfo, password, query values, credential parameters in its path),
    raw and percent-decoded."""
    parts = split_url(url)
    if parts is None:
        return set()
    _scheme, userinfo, authority, path, tail = parts
    found: set[str] = set()
    if userinfo:
        found.add(userinfo)
        if ":" in userinfo:
            found.add(userinfo.split(":", 1)[1])
    query, _, fragment = tail.partition("#")
    for item in re.split(r"[&;]", query[1:] if query.startswith("?") else ""):
        value = item.split("=", 1)[1] if "=" in item else item
        if value:
            found.add(value)
    if fragment:
        found.add(fragment)
    for name, value in path_parameters(path):
        if value and _CREDENTIAL_NAMES.search(name.lower()):
            found.add(value)
    if redact_url(url).endswith(f"://{MASK}") or f"://{MASK}/" in redact_url(url):
        found.add(authority + path + tail)  # unparseable: hide the whole remainder
    found |= {unquote(s) for s in found}
    return {s for s in found if len(s) >= MIN_SECRET_LENGTH}


class Redactor:
    """Redacts every URL in a text, and the given source's secret parts wherever they appear."""

    def __init__(self, source: str | None = None):
        self.secrets = sorted(url_secrets(source), key=len, reverse=True) if source else []

    @property
    def needed(self) -> bool:
        return bool(self.secrets)

    def __call__(self, text: str) -> str:
        text = _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text)
        for secret in self.secrets:
            text = text.replace(secret, MASK)
        return text


class StderrScrubber:
    """Routes file descriptors 1 and 2 through a pipe whose reader redacts each line.

    OpenCV and FFmpeg write to the descriptors directly (OPENCV_VIDEOIO_DEBUG=1, for one, prints the
    capture URL); Python's logging, tracebacks and print() go the same way.
    """

    def __init__(self, redact: Redactor, fds: tuple[int, ...] = (1, 2)):
        self.redact = redact
        self.fds = fds
        self._pipes: list[tuple[int, int, threading.Thread]] = []

    def start(self) -> StderrScrubber:
        for fd in self.fds:
            stream = sys.stdout if fd == 1 else sys.stderr if fd == 2 else None
            if stream is not None:
                stream.flush()
            original = os.dup(fd)
            read_end, write_end = os.pipe()
            os.dup2(write_end, fd)
            os.close(write_end)
            thread = threading.Thread(target=self._pump, args=(read_end, original), name=f"scrub-fd{fd}", daemon=True)
            thread.start()
            self._pipes.append((fd, original, thread))
        return self

    def _pump(self, read_end: int, original: int) -> None:
        with os.fdopen(read_end, "rb", buffering=0) as pipe:
            pending = b""
            while chunk := pipe.read(65536):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    self._write(original, line + b"\n")
            if pending:
                self._write(original, pending)

    def _write(self, original: int, data: bytes) -> None:
        text = self.redact(data.decode("utf-8", errors="replace"))
        try:
            os.write(original, text.encode("utf-8"))
        except OSError:
            pass

    def stop(self) -> None:
        """Restore the descriptors and wait until everything written so far is out."""
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        for fd, original, thread in self._pipes:
            os.dup2(original, fd)  # closes the pipe's only write end: the reader sees EOF
            thread.join(timeout=5)
            os.close(original)
        self._pipes.clear()


def credentials_in(url: str) -> list[str]:
    """Where a URL carries credentials, named without their values (userinfo, a credential-named query or
    path parameter): what a URL that may be stored or shown must not have."""
    parts = split_url(url)
    if parts is None:
        return []
    _scheme, userinfo, _authority, path, tail = parts
    found = ["user:password@ (userinfo)"] if userinfo else []
    query = tail.partition("#")[0]
    for item in re.split(r"[&;]", query[1:] if query.startswith("?") else ""):
        name = item.split("=", 1)[0]
        if "=" in item and _CREDENTIAL_NAMES.search(name.lower()):
            found.append(f"query parameter {name!r}")
    found += [f"path parameter {name!r}" for name, _ in path_parameters(path) if _CREDENTIAL_NAMES.search(name.lower())]
    return found
