"""Object storage for archived frames and results, and for models: a local folder or S3.

Key layout (relative to the storage root or s3://bucket/prefix):
    frames/{stream_id}/{YYYY-MM-DD}/{epoch:016d}-{seq:012d}.jpg    one JPEG per frame
    results/{stream_id}/{YYYY-MM-DD}/{epoch:016d}-{first_seq:012d}-{last_seq:012d}.jsonl
                                                                  one JSON line per frame result
The date is the frame's capture date (UTC); the epoch is the publisher run that numbered the frame
(vidpipe.contract.Header.EPOCH), so a restarted publisher, whose seq starts again, never writes over an
earlier run's keys. Objects are written only if absent (put_new): a replayed batch finds its frames
already there and leaves them, so no object ever gets a second version. The stream id is used verbatim:
the contract's rule (vidpipe.contract.STREAM_ID_PATTERN) makes it one safe path segment, and nothing is
mapped, so two streams never share keys.
"""

from __future__ import annotations

import datetime as dt
import errno
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse

from .contract import check_stream_id

# The two key families under the storage root (the layout above); the infrastructure's lifecycle
# rules and grants are written against these.
FRAMES_PREFIX = "frames/"
RESULTS_PREFIX = "results/"

# What an outage looks like, as opposed to a write this object's content makes fail: retried, never
# dead-lettered. Everything else (a key or body the store refuses) is that record's failure.
_TRANSIENT_ERRNOS = {
    errno.ENOSPC,
    errno.EIO,
    errno.EAGAIN,
    errno.EACCES,
    errno.EROFS,
    errno.EDQUOT,
    errno.ESTALE,
    errno.ETIMEDOUT,
    errno.ENFILE,
    errno.EMFILE,
}
_TRANSIENT_S3_CODES = {
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestTimeout",
    "RequestTimeTooSkewed",
    "InternalError",
    "ServiceUnavailable",
    "AccessDenied",
    "NoSuchBucket",
    "ExpiredToken",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "KMS.ThrottlingException",
    "KMS.DisabledException",
    "KMS.KMSInvalidStateException",
    "ConditionalRequestConflict",  # a concurrent conditional write to the same key: try again
}


def is_outage(exc: BaseException) -> bool:
    """True when a storage error says the store is unreachable, refusing us or overloaded (retry it);
    False when it is about what was written (the record's failure)."""
    try:
        from botocore.exceptions import BotoCoreError, ClientError
    except ImportError:  # pragma: no cover - boto3 is a dependency of this package
        BotoCoreError = ClientError = ()
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        return error.get("Code") in _TRANSIENT_S3_CODES or status >= 500 or status in (403, 429)
    if isinstance(exc, BotoCoreError):  # connection, timeout, credentials, endpoint errors
        return True
    if isinstance(exc, OSError):
        return exc.errno in _TRANSIENT_ERRNOS or isinstance(exc, (ConnectionError, TimeoutError))
    return False


def sha256_file(path: str | os.PathLike[str]) -> str:
    """A file's sha256, read in 1 MiB blocks (model files are tens of MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def stream_segment(stream_id: str) -> str:
    """The stream id as one key segment, verbatim; ValueError for an id the contract does not allow."""
    return check_stream_id(stream_id)


def capture_date(capture_ts_us: int) -> str:
    return dt.datetime.fromtimestamp(capture_ts_us / 1e6, tz=dt.UTC).strftime("%Y-%m-%d")


def frame_key(stream_id: str, epoch: int, capture_ts_us: int, seq: int) -> str:
    day = capture_date(capture_ts_us)
    return f"{FRAMES_PREFIX}{stream_segment(stream_id)}/{day}/{epoch:016d}-{seq:012d}.jpg"


def results_key(stream_id: str, epoch: int, capture_ts_us: int, first_seq: int, last_seq: int) -> str:
    day = capture_date(capture_ts_us)
    return f"{RESULTS_PREFIX}{stream_segment(stream_id)}/{day}/{epoch:016d}-{first_seq:012d}-{last_seq:012d}.jsonl"


class Storage(Protocol):
    uri: str

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None: ...

    def put_new(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> bool:
        """Write the object only if no object has that key; False when one was already there."""
        ...

    def get(self, key: str) -> bytes: ...

    def list(self, prefix: str = "") -> list[str]: ...


class LocalStorage:
    """A folder; writes are atomic (temp file + rename) so readers never see half an object."""

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root).resolve()
        self.uri = self.root.as_uri()

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root not in path.parents:
            raise ValueError(f"storage key {key!r} escapes the storage root")
        return path

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def put_new(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> bool:
        path = self._path(key)
        if path.exists():
            return False
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.link(tmp, path)  # atomic, and fails if another writer got there first
        except FileExistsError:
            return False
        finally:
            Path(tmp).unlink(missing_ok=True)
        return True

    def get(self, key: str) -> bytes:
        return self._path(key).read_bytes()

    def list(self, prefix: str = "") -> list[str]:
        if not self.root.exists():
            return []
        keys = (p.relative_to(self.root).as_posix() for p in self.root.rglob("*") if p.is_file())
        return sorted(k for k in keys if k.startswith(prefix) and not Path(k).name.startswith(".tmp-"))


class S3Storage:
    def __init__(self, bucket: str, prefix: str = "", client: Any = None):  # a boto3 S3 client (untyped)
        import boto3

        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.client = client or boto3.client("s3")
        self.uri = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, ContentType=content_type)

    def put_new(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.put_object(
                Bucket=self.bucket, Key=self._key(key), Body=data, ContentType=content_type, IfNoneMatch="*"
            )
        except ClientError as exc:
            # 412: the object exists. (409, a concurrent conditional write, is an outage: retried.)
            if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 412:
                return False
            raise
        return True

    def get(self, key: str) -> bytes:
        body: bytes = self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()
        return body

    def list(self, prefix: str = "") -> list[str]:
        keys: list[str] = []
        strip = len(self.prefix) + 1 if self.prefix else 0
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key(prefix)):
            keys.extend(obj["Key"][strip:] for obj in page.get("Contents", []))
        return sorted(keys)


def parse_s3_uri(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ValueError(f"{uri!r} is not an s3://bucket/prefix URI")
    return parsed.netloc, parsed.path.lstrip("/")


def open_storage(uri: str, s3_client: Any = None) -> Storage:
    """`s3://bucket/prefix` -> S3Storage; `file:///path` or a plain path -> LocalStorage."""
    if not uri:
        raise ValueError("storage URI is empty")
    if uri.startswith("s3://"):
        bucket, prefix = parse_s3_uri(uri)
        return S3Storage(bucket, prefix, client=s3_client)
    if uri.startswith("file://"):
        return LocalStorage(urlparse(uri).path)
    if "://" in uri:
        raise ValueError(f"storage URI {uri!r}: only s3:// and local paths are supported")
    return LocalStorage(uri)


def fetch_to_local(uri: str, cache_dir: str | os.PathLike[str], s3_client: Any = None) -> Path:
    """A local path for `uri`: itself when local, else an S3 object downloaded into cache_dir."""
    if not uri.startswith("s3://"):
        path = Path(urlparse(uri).path if uri.startswith("file://") else uri)
        if not path.is_file():
            raise FileNotFoundError(f"{uri}: no such file")
        return path
    import boto3

    bucket, key = parse_s3_uri(uri)
    if not key:
        raise ValueError(f"{uri!r} names a bucket but no object key")
    dest = Path(cache_dir) / bucket / key
    dest.parent.mkdir(parents=True, exist_ok=True)
    (s3_client or boto3.client("s3")).download_file(bucket, key, str(dest))
    return dest
