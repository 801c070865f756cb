"""Erase one stream's archived footage for a range of capture days, with every S3 object version.

    python -m tools.erase --archive s3://bucket/archive --stream lobby --from 2026-03-01 --to 2026-03-31 [--dry-run]

For erasure requests (GDPR Art. 17): the archive bucket is versioned, so deleting a key only hides it behind a
delete marker; this removes every version and every delete marker of every object under
frames/{stream}/{day}/ and results/{stream}/{day}/ (vidpipe.storage's layout; days are UTC capture days,
both ends included) and nothing else. The report (JSON on stdout) counts objects, versions, delete markers
and bytes per prefix; --dry-run lists what would go and removes nothing.

An operator's tool, run with credentials that may s3:ListBucket, s3:ListBucketVersions and
s3:DeleteObjectVersion on the bucket (the services' roles may not). Stop or re-route the stream first if
its days are still being written: what arrives during the run is found by the final listing and reported
as remaining (exit 1); run again.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from vidpipe.contract import check_stream_id
from vidpipe.storage import FRAMES_PREFIX, RESULTS_PREFIX, parse_s3_uri

# S3 DeleteObjects takes at most 1000 keys (versions) per request.
DELETE_BATCH = 1000


class EraseError(Exception):
    """Bad input, named by the argument at fault."""

    def __init__(self, argument: str, message: str):
        super().__init__(f"{argument}: {message}")
        self.argument = argument


@dataclass(frozen=True)
class Item:
    """One object version, or one delete marker."""

    key: str
    version_id: str | None
    size: int
    delete_marker: bool = False


@dataclass(frozen=True)
class Plan:
    """What to erase: one stream's prefixes for each capture day from `first` to `last`, inclusive."""

    stream: str
    first: dt.date
    last: dt.date

    @classmethod
    def parse(cls, stream: str, first: str, last: str) -> Plan:
        try:
            check_stream_id(stream)
        except ValueError as exc:
            raise EraseError("--stream", str(exc)) from None
        start, end = parse_day("--from", first), parse_day("--to", last)
        if start > end:
            raise EraseError("--from", f"{start} is after --to {end}")
        return cls(stream, start, end)

    def days(self) -> list[str]:
        return [(self.first + dt.timedelta(days=n)).isoformat() for n in range((self.last - self.first).days + 1)]

    def prefixes(self) -> list[str]:
        """Relative to the archive root; each ends with '/', so no other stream or day can match."""
        return [f"{family}{self.stream}/{day}/" for day in self.days() for family in (FRAMES_PREFIX, RESULTS_PREFIX)]


def parse_day(argument: str, value: str) -> dt.date:
    try:
        day = dt.date.fromisoformat(value)
    except ValueError:
        raise EraseError(argument, f"{value!r} is not a day (YYYY-MM-DD)") from None
    if day.isoformat() != value:  # fromisoformat also takes 20260301 and 2026-W09-7
        raise EraseError(argument, f"{value!r} is not a day (YYYY-MM-DD)")
    return day


class Archive(Protocol):
    uri: str

    def items(self, prefix: str) -> Iterator[Item]:
        """Every version and delete marker whose key starts with prefix (relative to the archive root)."""
        ...

    def delete(self, items: list[Item]) -> list[str]:
        """Remove these versions and markers; the errors, one sentence each."""
        ...


class S3Archive:
    def __init__(self, uri: str, client: Any = None):  # a boto3 S3 client (untyped)
        try:
            self.bucket, prefix = parse_s3_uri(uri)
        except ValueError as exc:
            raise EraseError("--archive", str(exc)) from None
        self.prefix = prefix.strip("/")
        self.uri = uri
        if client is None:
            import boto3

            client = boto3.client("s3")
        self.client = client
        self._check_bucket()

    def _check_bucket(self) -> None:
        from botocore.exceptions import ClientError

        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            code = exc.response.get("Error", {}).get("Code")
            if status == 404 or code in ("404", "NoSuchBucket"):
                raise EraseError("--archive", f"bucket {self.bucket!r} does not exist") from None
            if status == 403 or code in ("403", "AccessDenied"):
                raise EraseError("--archive", f"no access to bucket {self.bucket!r} with these credentials") from None
            raise

    def _full(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _relative(self, key: str) -> str:
        return key[len(self.prefix) + 1 :] if self.prefix else key

    def items(self, prefix: str) -> Iterator[Item]:
        paginator = self.client.get_paginator("list_object_versions")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self._full(prefix)):
            for version in page.get("Versions", []):
                yield Item(self._relative(version["Key"]), version.get("VersionId"), int(version.get("Size", 0)))
            for marker in page.get("DeleteMarkers", []):
                yield Item(self._relative(marker["Key"]), marker.get("VersionId"), 0, delete_marker=True)

    def delete(self, items: list[Item]) -> list[str]:
        errors = []
        for start in range(0, len(items), DELETE_BATCH):
            batch = items[start : start + DELETE_BATCH]
            objects = [
                {"Key": self._full(item.key), **({"VersionId": item.version_id} if item.version_id else {})}
                for item in batch
            ]
            response = self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": objects, "Quiet": True})
            errors += [
                f"{error.get('Key')} version {error.get('VersionId')}: {error.get('Code')} {error.get('Message', '')}".strip()
                for error in response.get("Errors", [])
            ]
        return errors


class LocalArchive:
    """An archive folder (a local run's CONSUMER_ARCHIVE_URI): files have no versions."""

    def __init__(self, uri: str):
        root = Path(uri.removeprefix("file://"))
        if not root.is_dir():
            raise EraseError("--archive", f"{uri} is not a folder (nor an s3://bucket/prefix URI)")
        self.root = root.resolve()
        self.uri = uri

    def items(self, prefix: str) -> Iterator[Item]:
        folder = self.root / prefix
        # A symlinked folder on the way would lead outside the stream's prefix: not followed.
        if not folder.is_dir() or folder.resolve() != folder:
            return
        for path in sorted(folder.rglob("*")):
            if path.is_file() and not path.is_symlink():
                yield Item(path.relative_to(self.root).as_posix(), None, path.stat().st_size)

    def delete(self, items: list[Item]) -> list[str]:
        errors = []
        folders = set()
        for item in items:
            path = self.root / item.key
            try:
                path.unlink()
            except OSError as exc:
                errors.append(f"{item.key}: {exc.strerror or exc}")
            folders.add(path.parent)
        # The emptied day folders go too (deepest first); the stream's and the families' folders stay.
        for folder in sorted(folders, key=lambda f: len(f.parts), reverse=True):
            try:
                folder.rmdir()
            except OSError:
                pass  # not empty: something arrived meanwhile, and the final listing reports it
        return errors


def open_archive(uri: str, s3_client: Any = None) -> Archive:
    if not uri:
        raise EraseError("--archive", "empty: give s3://bucket/prefix or a folder")
    if uri.startswith("s3://"):
        return S3Archive(uri, s3_client)
    if "://" in uri and not uri.startswith("file://"):
        raise EraseError("--archive", f"{uri!r}: only s3://bucket/prefix and local folders are supported")
    return LocalArchive(uri)


def _summary(items: Iterable[Item]) -> dict[str, int]:
    listed = list(items)
    return {
        "objects": len({i.key for i in listed}),
        "versions": sum(1 for i in listed if not i.delete_marker),
        "delete_markers": sum(1 for i in listed if i.delete_marker),
        "bytes": sum(i.size for i in listed),
    }


def erase(archive: Archive, plan: Plan, dry_run: bool = False) -> dict[str, Any]:
    """List, then (unless dry_run) remove every version and delete marker under the plan's prefixes; then list
    again. The report: per prefix and in total, what was found (objects, versions, delete markers, bytes),
    how many were removed, what remains, and any errors."""
    prefixes = plan.prefixes()
    found: dict[str, list[Item]] = {}
    for prefix in prefixes:
        items = list(archive.items(prefix))
        # Never anything outside the plan, whatever the store answered.
        stray = [i.key for i in items if not i.key.startswith(prefix)]
        if stray:
            raise RuntimeError(f"listing {prefix} returned keys outside it: {stray[:3]}")
        found[prefix] = items
    everything = [item for items in found.values() for item in items]
    errors = [] if dry_run else archive.delete(everything)
    remaining = {prefix: list(archive.items(prefix)) for prefix in prefixes} if not dry_run else found
    report_prefixes = []
    for prefix in prefixes:
        if not found[prefix] and not remaining[prefix]:
            continue
        entry: dict[str, Any] = {"prefix": prefix, **_summary(found[prefix])}
        if dry_run:
            entry["items"] = [
                {"key": i.key, "version_id": i.version_id, "size": i.size, "delete_marker": i.delete_marker}
                for i in found[prefix]
            ]
        else:
            entry["removed"] = len(found[prefix]) - _overlap(found[prefix], remaining[prefix])
            entry["remaining"] = len(remaining[prefix])
        report_prefixes.append(entry)
    totals: dict[str, int] = _summary(everything)
    if not dry_run:
        left = [item for items in remaining.values() for item in items]
        totals["removed"] = sum(e["removed"] for e in report_prefixes)
        totals["remaining"] = len(left)
    return {
        "archive": archive.uri,
        "stream": plan.stream,
        "from": plan.first.isoformat(),
        "to": plan.last.isoformat(),
        "days": len(plan.days()),
        "dry_run": dry_run,
        "prefixes": report_prefixes,
        "totals": totals,
        "errors": errors,
    }


def _overlap(before: list[Item], after: list[Item]) -> int:
    """How many of the versions listed before are still there after."""
    left = {(i.key, i.version_id) for i in after}
    return sum(1 for i in before if (i.key, i.version_id) in left)
