"""python -m tools.erase: one stream's archived days go with every version and delete marker; other streams,
other days and other prefixes stay; bad input is refused naming the argument. S3 is moto's, versioned."""

from __future__ import annotations

import json

import boto3
import pytest
from moto import mock_aws

from tools.erase import DELETE_BATCH, EraseError, Plan, erase, open_archive
from tools.erase.__main__ import main
from vidpipe.storage import LocalStorage

BUCKET = "archive-bucket"


def frame(stream: str, day: str, seq: int, epoch: int = 7) -> str:
    return f"frames/{stream}/{day}/{epoch:016d}-{seq:012d}.jpg"


def results(stream: str, day: str, first: int, epoch: int = 7) -> str:
    return f"results/{stream}/{day}/{epoch:016d}-{first:012d}-{first + 9:012d}.jsonl"


@pytest.fixture
def s3():
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        yield client


def versions(client, prefix: str = "") -> list[tuple[str, bool]]:
    """(key, is_delete_marker) for every version and marker under prefix."""
    found = []
    for page in client.get_paginator("list_object_versions").paginate(Bucket=BUCKET, Prefix=prefix):
        found += [(v["Key"], False) for v in page.get("Versions", [])]
        found += [(m["Key"], True) for m in page.get("DeleteMarkers", [])]
    return sorted(found)


def fill(client, root: str = "archive/") -> dict[str, list[str]]:
    """Two streams (lobby, lobby2: a name that shares lobby's beginning), four days; every lobby key in range
    has three versions and a delete marker. Returns which keys must go and which must stay."""
    doomed, kept = [], []
    for stream in ("lobby", "lobby2"):
        for day in ("2026-02-28", "2026-03-01", "2026-03-02", "2026-03-03"):
            for key in (frame(stream, day, 0), frame(stream, day, 1), results(stream, day, 0)):
                full = root + key
                for body in (b"one", b"two", b"three"):
                    client.put_object(Bucket=BUCKET, Key=full, Body=body)
                client.delete_object(Bucket=BUCKET, Key=full)  # a delete marker on top
                if key == frame(stream, day, 1):
                    client.put_object(Bucket=BUCKET, Key=full, Body=b"four")  # live again, 4 versions + marker
                in_range = stream == "lobby" and day in ("2026-03-01", "2026-03-02")
                (doomed if in_range else kept).append(full)
    # Outside the archive's prefix, a look-alike that must stay too.
    client.put_object(Bucket=BUCKET, Key="other/frames/lobby/2026-03-01/x.jpg", Body=b"x")
    kept.append("other/frames/lobby/2026-03-01/x.jpg")
    return {"doomed": doomed, "kept": kept}


def run(argv: list[str], capsys, client=None) -> tuple[int, dict | None, str]:
    code = main(argv, s3_client=client)
    out, err = capsys.readouterr()
    return code, (json.loads(out) if out.strip() else None), err


ARGS = ["--archive", f"s3://{BUCKET}/archive", "--stream", "lobby", "--from", "2026-03-01", "--to", "2026-03-02"]


def test_erases_every_version_and_marker_of_the_stream_days_and_nothing_else(s3, capsys):
    keys = fill(s3)
    before = versions(s3)
    doomed = [(k, m) for k, m in before if k in keys["doomed"]]
    assert len(doomed) == 2 * (3 + 1) * 2 + 2 * (4 + 1)  # two days: two keys with 3+marker, one with 4+marker

    code, report, err = run(ARGS, capsys, s3)

    assert code == 0, err
    after = versions(s3)
    assert after == [v for v in before if v[0] not in keys["doomed"]]
    assert {k for k, _ in after} == set(keys["kept"])
    assert report["totals"] == {
        "objects": 6,
        "versions": 2 * (3 + 3 + 4),
        "delete_markers": 6,
        "bytes": 2 * (2 * len(b"onetwothree") + len(b"onetwothreefour")),
        "removed": len(doomed),
        "remaining": 0,
    }
    assert [p["prefix"] for p in report["prefixes"]] == [
        "frames/lobby/2026-03-01/",
        "results/lobby/2026-03-01/",
        "frames/lobby/2026-03-02/",
        "results/lobby/2026-03-02/",
    ]
    first = report["prefixes"][0]
    assert (first["objects"], first["versions"], first["delete_markers"], first["removed"]) == (2, 7, 2, 9)
    assert report["errors"] == [] and report["dry_run"] is False and report["days"] == 2

    # Nothing left: a second run finds nothing and says so.
    code, again, _ = run(ARGS, capsys, s3)
    assert code == 0 and again["totals"]["objects"] == 0 and again["prefixes"] == []


def test_dry_run_lists_what_would_go_and_removes_nothing(s3, capsys):
    keys = fill(s3)
    before = versions(s3)

    code, report, _ = run([*ARGS, "--dry-run"], capsys, s3)

    assert code == 0 and versions(s3) == before
    listed = sorted(
        ("archive/" + item["key"], item["delete_marker"]) for p in report["prefixes"] for item in p["items"]
    )
    assert listed == [v for v in before if v[0] in keys["doomed"]]
    assert all(item["version_id"] for p in report["prefixes"] for item in p["items"])
    assert report["dry_run"] is True and "removed" not in report["totals"]


def test_deletes_in_batches_no_larger_than_s3_takes(s3, capsys, monkeypatch):
    """S3 DeleteObjects takes 1000 keys at most; the batching is exercised at a smaller size (moto stores
    a key's versions slowly)."""
    assert DELETE_BATCH == 1000
    monkeypatch.setattr("tools.erase.DELETE_BATCH", 10)
    key = "archive/" + frame("lobby", "2026-03-01", 0)
    for n in range(23):
        s3.put_object(Bucket=BUCKET, Key=key, Body=str(n).encode())
    batches = []
    original = s3.delete_objects

    def counting(**kwargs):
        batches.append(len(kwargs["Delete"]["Objects"]))
        return original(**kwargs)

    s3.delete_objects = counting
    code, report, _ = run(ARGS, capsys, s3)
    assert code == 0 and batches == [10, 10, 3]
    assert report["totals"]["removed"] == 23 and versions(s3, key) == []


def test_refused_deletions_are_reported_and_fail_the_run(s3, capsys):
    fill(s3)
    original = s3.delete_objects

    def refusing(**kwargs):
        first, *rest = kwargs["Delete"]["Objects"]
        response = original(**{**kwargs, "Delete": {**kwargs["Delete"], "Objects": rest}})
        response["Errors"] = [{**first, "Code": "AccessDenied", "Message": "Access Denied"}]
        return response

    s3.delete_objects = refusing
    code, report, err = run(ARGS, capsys, s3)
    assert code == 1
    assert len(report["errors"]) == 1 and "AccessDenied" in report["errors"][0] and "AccessDenied" in err
    assert report["totals"]["remaining"] == 1 and "1 versions remain" in err


def test_an_archive_at_the_bucket_root(s3, capsys):
    keys = fill(s3, root="")
    code, report, _ = run(["--archive", f"s3://{BUCKET}", *ARGS[2:]], capsys, s3)
    assert code == 0 and report["totals"]["objects"] == 6
    assert {k for k, _ in versions(s3)} == set(keys["kept"])


@pytest.mark.parametrize(
    ("argv", "named", "says"),
    [
        (["--stream", "../lobby"], "--stream", "not a valid stream id"),
        (["--stream", "lobby/2026-03-01"], "--stream", "not a valid stream id"),
        (["--stream", ""], "--stream", "not a valid stream id"),
        (["--from", "2026-03-32"], "--from", "is not a day (YYYY-MM-DD)"),
        (["--to", "20260302"], "--to", "is not a day (YYYY-MM-DD)"),
        (["--from", "2026-03-03"], "--from", "2026-03-03 is after --to 2026-03-02"),
        (["--archive", "s3://no-such-bucket/archive"], "--archive", "bucket 'no-such-bucket' does not exist"),
        (["--archive", "gs://bucket/archive"], "--archive", "only s3://bucket/prefix and local folders"),
        (["--archive", "/nonexistent/archive"], "--archive", "is not a folder"),
    ],
)
def test_bad_input_is_refused_naming_the_argument_and_touches_nothing(s3, capsys, argv, named, says):
    fill(s3)
    before = versions(s3)
    args = dict(zip(ARGS[::2], ARGS[1::2], strict=True)) | dict(zip(argv[::2], argv[1::2], strict=True))
    code, report, err = run([x for pair in args.items() for x in pair], capsys, s3)
    assert code == 2 and report is None
    assert err.startswith(f"error: {named}: ") and says in err, err
    assert versions(s3) == before


def test_plan_days_are_inclusive_and_prefixes_end_with_a_slash():
    plan = Plan.parse("lobby", "2026-02-28", "2026-03-01")
    assert plan.days() == ["2026-02-28", "2026-03-01"]
    assert plan.prefixes() == [
        "frames/lobby/2026-02-28/",
        "results/lobby/2026-02-28/",
        "frames/lobby/2026-03-01/",
        "results/lobby/2026-03-01/",
    ]
    assert Plan.parse("lobby", "2026-03-01", "2026-03-01").days() == ["2026-03-01"]
    with pytest.raises(EraseError) as exc:
        Plan.parse("lobby", "2026-03-02", "2026-03-01")
    assert exc.value.argument == "--from"


def test_a_local_archive_folder(tmp_path, capsys):
    """A local run's archive (CONSUMER_ARCHIVE_URI a folder), written as the consumer writes it."""
    storage = LocalStorage(tmp_path)
    for stream in ("lobby", "lobby2"):
        for day in ("2026-02-28", "2026-03-01", "2026-03-02", "2026-03-03"):
            storage.put_new(frame(stream, day, 0), b"jpeg")
            storage.put_new(results(stream, day, 0), b'{"seq": 0}\n')
    kept = [
        k
        for k in storage.list()
        if not (k.split("/")[1] == "lobby" and k.split("/")[2] in ("2026-03-01", "2026-03-02"))
    ]

    code, report, _ = run([*ARGS[2:], "--archive", str(tmp_path), "--dry-run"], capsys)
    assert code == 0 and report["totals"]["objects"] == 4 and len(storage.list()) == 16

    code, report, _ = run(["--archive", str(tmp_path), *ARGS[2:]], capsys)
    assert code == 0 and report["totals"] == {
        "objects": 4,
        "versions": 4,
        "delete_markers": 0,
        "bytes": 2 * (4 + 11),
        "removed": 4,
        "remaining": 0,
    }
    assert storage.list() == kept
    assert not (tmp_path / "frames/lobby/2026-03-01").exists() and (tmp_path / "frames/lobby/2026-03-03").is_dir()


def test_a_local_archive_never_follows_a_link_out_of_the_stream(tmp_path, capsys):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "precious.jpg").write_bytes(b"keep")
    archive = tmp_path / "archive"
    (archive / "frames/lobby").mkdir(parents=True)
    (archive / "frames/lobby/2026-03-01").symlink_to(outside, target_is_directory=True)
    code, report, _ = run(["--archive", str(archive), *ARGS[2:]], capsys)
    assert code == 0 and report["totals"]["objects"] == 0
    assert (outside / "precious.jpg").read_bytes() == b"keep"


def test_open_archive_names_the_argument():
    with pytest.raises(EraseError) as exc:
        open_archive("")
    assert exc.value.argument == "--archive"


def test_the_report_names_what_was_erased(s3):
    fill(s3)
    archive = open_archive(f"s3://{BUCKET}/archive", s3)
    report = erase(archive, Plan.parse("lobby", "2026-03-01", "2026-03-01"))
    assert report | {"prefixes": None, "totals": None} == {
        "archive": f"s3://{BUCKET}/archive",
        "stream": "lobby",
        "from": "2026-03-01",
        "to": "2026-03-01",
        "days": 1,
        "dry_run": False,
        "prefixes": None,
        "totals": None,
        "errors": [],
    }
