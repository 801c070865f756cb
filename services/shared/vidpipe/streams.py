"""`python -m vidpipe.streams`: manage the stream registry through the analytics service's control API.

    python -m vidpipe.streams list
    python -m vidpipe.streams get lobby
    python -m vidpipe.streams add lobby --source secret:lobby --fps 5 --line door:0.1,0.6,0.9,0.6 \\
        --zone queue:0.1,0.1;0.5,0.1;0.5,0.5;0.1,0.5
    python -m vidpipe.streams add -f lobby.yaml
    python -m vidpipe.streams update lobby --fps 10 --zone queue:0.2,0.1;0.6,0.1;0.6,0.5
    python -m vidpipe.streams disable lobby      # enable lobby, remove lobby
    python -m vidpipe.streams apply -f streams.yaml --dry-run

The service's URL comes from --url or VIDPIPE_API_URL (default http://127.0.0.1:8082, e.g. a
`kubectl port-forward`), its token from --token-file or VIDPIPE_API_TOKEN. Definitions and streams files
are validated here first, by the registry's own code, so a bad one is refused naming its key before
anything is sent. Files are JSON, or YAML where PyYAML is installed. Standard library only, besides the
shared package: any pod or laptop with vidpipe installed can run it.

Exit codes: 0 done; 1 the service could not be reached or could not do it now (connection refused, a
timeout, 503: the registry or broker is unavailable; try again); 2 invalid (the command line, a
definition or a file, refused here or by the service): nothing was changed; 3 no such stream (or the
service does not follow the registry); 4 refused otherwise (401: the token is missing or wrong; 412: the
stream exists already, for add).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from .contract import check_stream_id
from .stream_registry import RegistryError, parse_definition, parse_streams, source_kind

DEFAULT_URL = "http://127.0.0.1:8082"
OK, UNAVAILABLE, INVALID, NOT_FOUND, REFUSED = 0, 1, 2, 3, 4


class Failed(Exception):
    def __init__(self, code: int, lines: list[str]):
        super().__init__("\n".join(lines))
        self.code = code
        self.lines = lines


# --- reading what the user gives ---------------------------------------------------------------------


def read_document(path: str) -> Any:
    """A JSON or YAML file ('-': standard input)."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text()
    except OSError as exc:
        raise Failed(INVALID, [f"{path}: {exc.strerror or exc}"]) from None
    try:
        return json.loads(text)
    except ValueError:
        pass
    try:
        import yaml
    except ImportError:
        raise Failed(INVALID, [f"{path}: not JSON, and PyYAML is not installed here to read YAML: "
                               "`pip install pyyaml`, or give the file as JSON"]) from None  # fmt: skip
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise Failed(INVALID, [f"{path}: neither JSON nor valid YAML: {exc}"]) from None


def _numbers(text: str, count: int, flag: str, value: str, shape: str) -> list[float]:
    parts = text.split(",")
    try:
        numbers = [float(p) for p in parts]
    except ValueError:
        numbers = []
    if len(numbers) != count:
        raise Failed(INVALID, [f"{flag} {value!r}: expected {shape}"])
    return numbers


def parse_line(value: str) -> dict[str, Any]:
    """--line NAME:X1,Y1,X2,Y2 (fractions of the frame) -> a line definition."""
    shape = "NAME:X1,Y1,X2,Y2 (fractions of the frame, e.g. door:0.1,0.6,0.9,0.6)"
    name, sep, coordinates = value.partition(":")
    if not sep or not name:
        raise Failed(INVALID, [f"--line {value!r}: expected {shape}"])
    x1, y1, x2, y2 = _numbers(coordinates, 4, "--line", value, shape)
    return {"name": name, "start": [x1, y1], "end": [x2, y2]}


def parse_zone(value: str) -> dict[str, Any]:
    """--zone NAME:X,Y;X,Y;X,Y[;...] -> a zone definition."""
    shape = "NAME:X,Y;X,Y;X,Y... (at least 3 points, fractions of the frame)"
    name, sep, points = value.partition(":")
    if not sep or not name:
        raise Failed(INVALID, [f"--zone {value!r}: expected {shape}"])
    polygon = [_numbers(point, 2, "--zone", value, shape) for point in points.split(";") if point.strip()]
    return {"name": name, "polygon": polygon}


def _stream_id(value: str) -> str:
    try:
        return check_stream_id(value)
    except ValueError as exc:
        raise Failed(INVALID, [f"stream id {value!r}: {exc}"]) from None


def _fields(args: argparse.Namespace) -> dict[str, Any]:
    """The definition fields the flags of add and update give."""
    fields: dict[str, Any] = {}
    for flag, key in (("source", "source"), ("fps", "target_fps"), ("resize", "resize"),
                      ("jpeg_quality", "jpeg_quality"), ("loop", "loop"), ("enabled", "enabled")):  # fmt: skip
        if getattr(args, flag, None) is not None:
            fields[key] = getattr(args, flag)
    if args.line or getattr(args, "no_lines", False):
        fields["lines"] = [parse_line(v) for v in args.line or []]
    if args.zone or getattr(args, "no_zones", False):
        fields["zones"] = [parse_zone(v) for v in args.zone or []]
    return fields


def _refused(problems: list[str]) -> Failed:
    return Failed(INVALID, ["refused, nothing sent:", *(f"  {p}" for p in problems)])


# --- the API ----------------------------------------------------------------------------------------


class Api:
    def __init__(self, url: str, token: str | None, timeout_s: float):
        self.url = url.rstrip("/")
        self.token = token
        self.timeout_s = timeout_s

    def call(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> Any:
        request = urllib.request.Request(self.url + path, method=method, headers={"Accept": "application/json"})
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        if body is not None:
            request.data = json.dumps(body).encode()
            request.add_header("Content-Type", "application/json")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                data = response.read()
                return json.loads(data) if data else None
        except urllib.error.HTTPError as exc:
            raise _http_failure(exc) from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            reason = getattr(exc, "reason", exc)
            raise Failed(UNAVAILABLE, [f"cannot reach {self.url}: {reason} (--url or VIDPIPE_API_URL)"]) from None

    def stream_path(self, stream_id: str, suffix: str = "") -> str:
        return f"/api/registry/streams/{urllib.parse.quote(stream_id, safe='')}{suffix}"


def _http_failure(exc: urllib.error.HTTPError) -> Failed:
    try:
        error = json.loads(exc.read()).get("error") or {}
    except (ValueError, AttributeError):
        error = {}
    message = str(error.get("message") or exc.reason)
    field = error.get("field")
    lines = [f"{field}: {message}" if field and not error.get("problems") else message]
    if error.get("problems"):
        lines = ["refused by the service, nothing changed:"]
        lines += [
            f"  {p['field']}: {p['message']}" if p.get("field") else f"  {p['message']}" for p in error["problems"]
        ]
    if exc.code == 503 and exc.headers.get("Retry-After"):
        lines.append(f"try again in {exc.headers['Retry-After']}s")
    if exc.code == 401:
        lines.append("give the service's token: --token-file PATH or VIDPIPE_API_TOKEN")
    code = {422: INVALID, 404: NOT_FOUND, 413: INVALID, 415: INVALID}.get(exc.code)
    if code is None:
        code = UNAVAILABLE if exc.code >= 500 else REFUSED
    return Failed(code, [f"HTTP {exc.code}: {lines[0]}", *lines[1:]])


# --- the commands -----------------------------------------------------------------------------------


def _age(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.1f}s ago"


def command_list(api: Api, args: argparse.Namespace) -> None:
    answer = api.call("GET", "/api/registry/streams")
    if args.json:
        print(json.dumps(answer, indent=2))
        return
    rows = [("ID", "ENABLED", "STATE", "FPS", "LAST FRAME", "SOURCE", "LINES", "ZONES", "LAST ERROR")]
    for stream in answer["streams"]:
        d, s = stream["definition"], stream["status"]
        rows.append((
            d["id"], "yes" if d["enabled"] else "no", s["state"], "-" if s["fps"] is None else f"{s['fps']:.1f}",
            _age(s["last_frame_age_s"]), source_kind(d["source"]), str(len(d["lines"])), str(len(d["zones"])),
            (s["last_error"] or "-")[:60],
        ))  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    for bad in answer.get("invalid") or []:
        print(f"invalid record of {bad['id']} (skipped): {bad['error']}", file=sys.stderr)
    if answer.get("regions_from") == "file":
        print("(the registry holds no stream: the service's lines and zones come from its streams file)")


def command_get(api: Api, args: argparse.Namespace) -> None:
    print(json.dumps(api.call("GET", api.stream_path(_stream_id(args.id))), indent=2))


def _definition_file(args: argparse.Namespace) -> dict[str, Any]:
    document = read_document(args.file)
    if not isinstance(document, dict):
        raise Failed(INVALID, [f"{args.file}: expected one stream definition (a mapping)"])
    if args.id is not None and document.setdefault("id", args.id) != args.id:
        raise Failed(INVALID, [f"{args.file}: id {document['id']!r} differs from {args.id!r}"])
    if not isinstance(document.get("id"), str):
        raise Failed(INVALID, [f"{args.file}: id: required (in the file or as the argument)"])
    return document


def _validated(document: dict[str, Any]) -> dict[str, Any]:
    try:
        return parse_definition(document, f"streams[{document['id']}]").document()
    except RegistryError as exc:
        raise _refused(exc.problems) from None


def command_add(api: Api, args: argparse.Namespace) -> None:
    if args.file:
        document = _definition_file(args)
    else:
        if args.id is None or args.source is None:
            raise Failed(INVALID, ["add: give ID and --source, or -f FILE"])
        document = {"id": args.id, **_fields(args)}
    definition = _validated(document)
    stream_id = _stream_id(definition["id"])
    api.call("PUT", api.stream_path(stream_id), definition, {"If-None-Match": "*"})
    print(f"{stream_id}: added")


def command_update(api: Api, args: argparse.Namespace) -> None:
    stream_id = _stream_id(args.id)
    if args.file:
        api.call("PUT", api.stream_path(stream_id), _validated(_definition_file(args)), {"If-Match": "*"})
        print(f"{stream_id}: replaced")
        return
    fields = _fields(args)
    if not fields:
        raise Failed(INVALID, ["update: nothing to change (give flags such as --fps, --line, --zone, or -f FILE)"])
    api.call("PATCH", api.stream_path(stream_id), fields)
    print(f"{stream_id}: updated ({', '.join(sorted(fields))})")


def command_switch(api: Api, args: argparse.Namespace) -> None:
    stream_id = _stream_id(args.id)
    api.call("POST", api.stream_path(stream_id, f":{args.command}"))
    print(f"{stream_id}: {args.command}d")


def command_remove(api: Api, args: argparse.Namespace) -> None:
    stream_id = _stream_id(args.id)
    api.call("DELETE", api.stream_path(stream_id))
    print(f"{stream_id}: removed")


def command_apply(api: Api, args: argparse.Namespace) -> None:
    try:
        desired = parse_streams(read_document(args.file))
    except RegistryError as exc:
        raise _refused(exc.problems) from None
    query = urllib.parse.urlencode({"dry_run": str(args.dry_run).lower(), "prune": str(not args.no_prune).lower()})
    body = {"streams": [d.document() for d in desired.values()]}
    answer = api.call("POST", f"/api/registry/apply?{query}", body)
    print(answer["diff"])
    if args.dry_run:
        print("dry run: nothing applied")
    elif answer["applied"]:
        print(f"applied: {len(answer['added'])} added, {len(answer['updated'])} updated, "
              f"{len(answer['removed'])} removed")  # fmt: skip


# --- the command line -------------------------------------------------------------------------------


def _stream_flags(parser: argparse.ArgumentParser, update: bool) -> None:
    parser.add_argument("-f", "--file", help="a stream definition (JSON, or YAML with PyYAML)")
    parser.add_argument("--source", help="secret:<key> of the camera Secret, a Secrets Manager ARN, or a URL")
    parser.add_argument("--fps", type=float, help="frames per second sampled from the source")
    parser.add_argument("--resize", help="WIDTHxHEIGHT, or WIDTH")
    parser.add_argument("--jpeg-quality", type=int)
    parser.add_argument("--loop", action=argparse.BooleanOptionalAction, default=None, help="restart a file at its end")
    parser.add_argument("--enabled", action=argparse.BooleanOptionalAction, default=None)
    what = "replaces all the stream's lines" if update else "a counting line"
    parser.add_argument("--line", action="append", metavar="NAME:X1,Y1,X2,Y2", help=f"{what}; repeatable")
    what = "replaces all the stream's zones" if update else "a zone"
    parser.add_argument("--zone", action="append", metavar="NAME:X,Y;X,Y;...", help=f"{what}; repeatable")
    if update:
        parser.add_argument("--no-lines", action="store_true", help="remove every line")
        parser.add_argument("--no-zones", action="store_true", help="remove every zone")


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(
        prog="python -m vidpipe.streams",
        description="Manage the stream registry through the analytics service's control API.",
        epilog="Exit codes: 0 done; 1 unreachable or unavailable (retry); 2 invalid, nothing changed; "
        "3 no such stream; 4 refused (token, or the stream exists already).",
    )
    main.add_argument("--url", default=os.environ.get("VIDPIPE_API_URL") or DEFAULT_URL,
                      help=f"the analytics service (default: VIDPIPE_API_URL or {DEFAULT_URL})")  # fmt: skip
    main.add_argument("--token-file", help="a file holding the service's token (default: VIDPIPE_API_TOKEN)")
    main.add_argument(
        "--token-secret-arn",
        help="a Secrets Manager secret holding the service's token (JSON key 'token' or the string itself; "
        "default: VIDPIPE_API_TOKEN_SECRET_ARN; needs boto3)",
    )
    main.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for an answer")
    commands = main.add_subparsers(dest="command", required=True, metavar="COMMAND")
    listing = commands.add_parser("list", help="every stream with its state")
    listing.add_argument("--json", action="store_true", help="the API's answer as is")
    commands.add_parser("get", help="one stream's definition and state").add_argument("id")
    add = commands.add_parser("add", help="add a stream (refused if it exists)")
    add.add_argument("id", nargs="?")
    _stream_flags(add, update=False)
    update = commands.add_parser("update", help="change a stream's fields (-f: replace its definition)")
    update.add_argument("id")
    _stream_flags(update, update=True)
    for name, text in (("enable", "publish and analyze it"), ("disable", "stop publishing it, keep its definition"),
                       ("remove", "remove it (its analytics state goes with it)")):  # fmt: skip
        commands.add_parser(name, help=text).add_argument("id")
    apply = commands.add_parser("apply", help="make the registry match a streams file ({streams: [...]})")
    apply.add_argument("-f", "--file", required=True, help="the streams file (JSON, or YAML with PyYAML)")
    apply.add_argument("--dry-run", action="store_true", help="show the diff, change nothing")
    apply.add_argument("--no-prune", action="store_true", help="keep the streams the file does not define")
    return main


COMMANDS = {
    "list": command_list,
    "get": command_get,
    "add": command_add,
    "update": command_update,
    "enable": command_switch,
    "disable": command_switch,
    "remove": command_remove,
    "apply": command_apply,
}


def _token(args: argparse.Namespace) -> str | None:
    arn = args.token_secret_arn or os.environ.get("VIDPIPE_API_TOKEN_SECRET_ARN")
    if arn:  # in the cluster (the registry's seed Job): the service's own token secret, read with boto3
        from .secrets import SecretError, read_secret_string

        try:
            return read_secret_string(arn, "token")
        except SecretError as exc:
            raise Failed(UNAVAILABLE, [f"--token-secret-arn: {exc}"]) from None
    if args.token_file:
        try:
            return Path(args.token_file).read_text().strip() or None
        except OSError as exc:
            raise Failed(INVALID, [f"--token-file {args.token_file}: {exc.strerror or exc}"]) from None
    return os.environ.get("VIDPIPE_API_TOKEN") or None


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)  # a bad command line exits 2, as argparse does
    try:
        COMMANDS[args.command](Api(args.url, _token(args), args.timeout), args)
    except Failed as failure:
        for index, line in enumerate(failure.lines):
            print(line if index else f"error: {line}", file=sys.stderr)
        return failure.code
    return OK


def run() -> NoReturn:
    sys.exit(main())


if __name__ == "__main__":
    run()
