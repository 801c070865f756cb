"""`python -m vidpipe.streams` against a running analytics service (the real broker), as an operator runs
it: add, get, list, update, disable, enable, apply (dry run, applied, refused), remove; the exit codes
it documents; a bad definition or file refused before anything is sent, naming its key."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from analytics_registry_support import TOKEN, call, registry_service

from tests.analytics_support import GATE, PEN
from tools.harness.processes import analytics_url, free_port, service_env
from tools.paths import ROOT
from vidpipe.streams import Failed, parse_line, parse_zone

BOW_TIE = "pen:0.1,0.1;0.5,0.5;0.5,0.1;0.1,0.5"


def test_line_and_zone_flags():
    assert parse_line("door:0.1,0.6,0.9,0.6") == {"name": "door", "start": [0.1, 0.6], "end": [0.9, 0.6]}
    assert parse_zone("q:0,0;1,0;1,1") == {"name": "q", "polygon": [[0, 0], [1, 0], [1, 1]]}
    for bad in ("door", "door:0.1,0.6,0.9", ":0,0,1,1", "door:a,b,c,d"):
        with pytest.raises(Failed) as caught:
            parse_line(bad)
        assert caught.value.code == 2 and "--line" in caught.value.lines[0]


@pytest.fixture(scope="module")
def service(kafka_bootstrap, kafka_settings, tmp_path_factory):
    process, _ = registry_service(kafka_bootstrap, kafka_settings, tmp_path_factory.mktemp("cli"))
    process.start()
    try:
        process.wait_ready(timeout_s=90)
        yield process
    finally:
        assert process.stop() == 0, process.log_tail()


@pytest.fixture
def cli(service, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")

    def run(*args: str, token: bool = True, url: str | None = None) -> subprocess.CompletedProcess[str]:
        env = service_env(VIDPIPE_API_URL=url or analytics_url(service, ""))
        env.pop("VIDPIPE_API_TOKEN", None)
        flags = ["--token-file", str(token_file)] if token else []
        return subprocess.run([sys.executable, "-m", "vidpipe.streams", *flags, *args], env=env, cwd=ROOT,
                              capture_output=True, text=True, timeout=60)  # fmt: skip

    return run


def _registry(service) -> dict:
    status, _, answer = call(service, "GET", "/api/registry/streams")
    assert status == 200, answer
    return {s["id"]: s["definition"] for s in answer["streams"]}


pytestmark = pytest.mark.broker


def test_add_get_list_update_disable_enable_remove(cli, service):
    zone = "pen:" + ";".join(f"{x},{y}" for x, y in PEN["polygon"])
    added = cli("add", "lobby", "--source", "secret:lobby", "--fps", "5", "--line", "gate:0.5,1,0.5,0", "--zone", zone)
    assert added.returncode == 0 and "lobby: added" in added.stdout, added.stderr
    got = cli("get", "lobby")
    assert got.returncode == 0 and json.loads(got.stdout)["definition"]["lines"] == [GATE]
    assert json.loads(got.stdout)["definition"]["zones"] == [PEN]

    again = cli("add", "lobby", "--source", "secret:lobby")
    assert again.returncode == 4 and "exists" in again.stderr  # add never replaces

    refused = cli("add", "yard", "--source", "secret:yard", "--zone", BOW_TIE)
    assert refused.returncode == 2 and "streams[yard].zones[0].polygon" in refused.stderr
    assert "nothing sent" in refused.stderr and "yard" not in _registry(service)

    updated = cli("update", "lobby", "--fps", "7", "--no-zones")
    assert updated.returncode == 0, updated.stderr
    assert _registry(service)["lobby"]["target_fps"] == 7 and _registry(service)["lobby"]["zones"] == []
    bad_update = cli("update", "lobby", "--line", "gate:0.5,1.5,0.5,0")
    assert bad_update.returncode == 2 and "streams[lobby].lines[0].start" in bad_update.stderr

    assert cli("disable", "lobby").returncode == 0
    listed = cli("list")
    assert listed.returncode == 0 and "STATE" in listed.stdout
    (row,) = [line.split() for line in listed.stdout.splitlines() if line.startswith("lobby ")]
    assert row[:3] == ["lobby", "no", "disabled"]
    assert cli("enable", "lobby").returncode == 0 and _registry(service)["lobby"]["enabled"] is True

    assert cli("remove", "lobby").returncode == 0 and "lobby" not in _registry(service)
    assert cli("get", "lobby").returncode == 3
    assert cli("remove", "lobby").returncode == 3


def test_apply_a_streams_file(cli, service, tmp_path):
    call(service, "PUT", "/api/registry/streams/old", {"source": "secret:old"})
    streams = tmp_path / "streams.yaml"
    streams.write_text(
        "streams:\n"
        "  - id: door\n    source: secret:door\n    lines:\n      - {name: gate, start: [0.5, 1.0], end: [0.5, 0.0]}\n"
        "  - id: dock\n    source: secret:dock\n    target_fps: 2\n"
    )
    dry = cli("apply", "-f", str(streams), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "+ dock (added)" in dry.stdout and "+ door (added)" in dry.stdout and "- old (removed)" in dry.stdout
    assert "dry run: nothing applied" in dry.stdout and "door" not in _registry(service)

    kept = cli("apply", "-f", str(streams), "--no-prune")
    assert kept.returncode == 0 and "applied: 2 added, 0 updated, 0 removed" in kept.stdout, kept.stdout
    assert set(_registry(service)) >= {"door", "dock", "old"}

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"streams": [{"id": "door", "source": "secret:door", "zones": [parse_zone(BOW_TIE)]}]}))
    refused = cli("apply", "-f", str(bad))
    assert refused.returncode == 2 and "streams[door].zones[0].polygon" in refused.stderr
    assert _registry(service)["door"]["zones"] == [] and "old" in _registry(service)  # nothing sent

    pruned = cli("apply", "-f", str(streams))
    assert pruned.returncode == 0 and "- old (removed)" in pruned.stdout and "old" not in _registry(service)
    assert cli("apply", "-f", str(streams)).stdout.startswith("no changes")


def test_exit_codes_for_a_missing_token_and_an_unreachable_service(cli):
    unauthorized = cli("list", token=False)
    assert unauthorized.returncode == 4 and "HTTP 401" in unauthorized.stderr and "--token-file" in unauthorized.stderr
    unreachable = cli("list", url=f"http://127.0.0.1:{free_port()}")
    assert unreachable.returncode == 1 and "cannot reach" in unreachable.stderr
    usage = cli("frobnicate")
    assert usage.returncode == 2
