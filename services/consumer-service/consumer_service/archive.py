"""Archive frames and results to storage under the documented key layout."""
from __future__ import annotations

from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor

import orjson

from vidpipe.contract import JPEG_CONTENT_TYPE, FrameMeta
from vidpipe.storage import Storage, frame_key, results_key


class Archiver:
    def __init__(self, storage: Storage, workers: int, archive_frames: bool = True):
        self.storage = storage
        self.archive_frames = archive_frames
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="archive")

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def store(self, frames: list[tuple[FrameMeta, bytes]], results: list[dict]) -> None:
        """Write every frame and one JSON-lines object per stream; raises if any write fails."""
        jobs = []
        if self.archive_frames:
            for meta, value in frames:
                key = frame_key(meta.stream_id, meta.capture_ts_us, meta.seq)
                jobs.append(self._pool.submit(self.storage.put, key, value, JPEG_CONTENT_TYPE))
        by_stream: dict[str, list[dict]] = defaultdict(list)
        for doc in results:
            by_stream[doc["stream_id"]].append(doc)
        for stream_id, docs in by_stream.items():
            docs.sort(key=lambda d: d["seq"])
            key = results_key(stream_id, docs[0]["capture_ts_us"], docs[0]["seq"], docs[-1]["seq"])
            body = b"".join(orjson.dumps(d) + b"\n" for d in docs)
            jobs.append(self._pool.submit(self.storage.put, key, body, "application/x-ndjson"))
        for job in jobs:
            job.result()
