"""Archive frames and results to storage under the documented key layout."""

from __future__ import annotations

from collections import defaultdict
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import orjson

from vidpipe.contract import JPEG_CONTENT_TYPE, FrameMeta
from vidpipe.storage import Storage, frame_key, is_outage, results_key


class StorageUnavailable(RuntimeError):
    """The store is unreachable or refusing us: the whole batch is retried, nothing is dead-lettered."""


class Archiver:
    def __init__(self, storage: Storage, workers: int, archive_frames: bool = True):
        self.storage = storage
        self.archive_frames = archive_frames
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="archive")
        # Objects a retry or replay found already written (and left as they were); approximate under
        # concurrent writers, for the log and metrics only.
        self.already_stored = 0

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def store(self, items: list[tuple[FrameMeta, bytes, dict[str, Any]]]) -> dict[int, str]:
        """Write each frame and one JSON-lines object of results per stream and publisher run (epoch).

        Returns, by item index, why a write failed because of what was written (that record's failure);
        raises StorageUnavailable when any write failed because of the store (retry the batch). Objects
        are written only where absent: a retry or replay leaves what an earlier attempt stored, so no
        object gets a second version, and a frame's key names that frame alone (stream, epoch, seq)."""
        jobs: list[tuple[list[int], Future[None]]] = []
        if self.archive_frames:
            for index, (meta, value, _) in enumerate(items):
                jobs.append(([index], self._pool.submit(self._put_frame, meta, value)))
        by_stream: dict[tuple[str, int], list[int]] = defaultdict(list)
        for index, (meta, _, _) in enumerate(items):
            by_stream[meta.stream_id, meta.epoch].append(index)
        for indices in by_stream.values():
            indices.sort(key=lambda i: items[i][0].seq)
            jobs.append((indices, self._pool.submit(self._put_results, [items[i] for i in indices])))
        failed: dict[int, str] = {}
        outage: BaseException | None = None
        for indices, job in jobs:
            exc = job.exception()
            if exc is None:
                continue
            if is_outage(exc):
                outage = outage or exc
            else:
                for index in indices:
                    failed.setdefault(index, f"archive refused the record: {type(exc).__name__}: {str(exc)[:300]}")
        if outage is not None:
            raise StorageUnavailable(f"{type(outage).__name__}: {outage}") from outage
        return failed

    def _put_frame(self, meta: FrameMeta, value: bytes) -> None:
        key = frame_key(meta.stream_id, meta.epoch, meta.capture_ts_us, meta.seq)
        if not self.storage.put_new(key, value, JPEG_CONTENT_TYPE):
            self.already_stored += 1

    def _put_results(self, items: list[tuple[FrameMeta, bytes, dict[str, Any]]]) -> None:
        first, last = items[0][0], items[-1][0]
        key = results_key(first.stream_id, first.epoch, first.capture_ts_us, first.seq, last.seq)
        body = b"".join(orjson.dumps(doc) + b"\n" for _, _, doc in items)
        if not self.storage.put_new(key, body, "application/x-ndjson"):
            self.already_stored += 1
