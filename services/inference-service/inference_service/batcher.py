"""Dynamic batching: frames from concurrent requests share one model run.

A worker thread takes up to `max_batch` pending frames, waiting at most `max_delay` after the
oldest arrived; the queue is bounded so overload is answered (503) instead of buffered. With several
model instances there is a worker per instance: while all are busy, pending frames gather into the next
full batches.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Generic, TypeVar

T = TypeVar("T")  # what is queued (an image)
R = TypeVar("R")  # what each item's future resolves to (its result)


class QueueFull(RuntimeError):
    pass


class BatcherClosed(RuntimeError):
    pass


class DynamicBatcher(Generic[T, R]):
    def __init__(
        self,
        run_batch: Callable[[list[T]], list[Any]],
        max_batch: int,
        max_delay_s: float,
        max_queue: int,
        on_batch: Callable[[int, float], None] | None = None,
        finish: Callable[[list[T], list[Any]], list[R]] | None = None,
        workers: int = 1,
    ):
        """run_batch(items) runs the model; with `finish`, run_batch returns raw outputs and
        finish(items, outputs) turns them into results on a second thread, so the next model
        run does not wait for post-processing."""
        self._run_batch = run_batch
        self._finish = finish
        self._finisher = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="finish") if finish else None
        self.max_batch = max_batch
        self.max_delay_s = max_delay_s
        self.max_queue = max_queue
        self._on_batch = on_batch
        self._pending: deque[tuple[T, Future[R], float]] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._threads = [
            threading.Thread(target=self._work, name=f"batcher-{index}", daemon=True) for index in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    @property
    def depth(self) -> int:
        return len(self._pending)

    def submit(self, items: list[T]) -> list[Future[R]]:
        """Queue items as a unit: all are accepted, or QueueFull is raised for all."""
        now = time.monotonic()
        with self._cond:
            if self._closed:
                raise BatcherClosed("shutting down")
            if len(self._pending) + len(items) > self.max_queue:
                raise QueueFull(f"{len(self._pending)} frames queued, limit {self.max_queue}")
            futures: list[Future[R]] = []
            for item in items:
                future: Future[R] = Future()
                self._pending.append((item, future, now))
                futures.append(future)
            self._cond.notify()
        return futures

    def cancel(self, futures: list[Future[R]]) -> int:
        """Drop the given items still waiting in the queue (their request was abandoned): they are never
        run, their futures are cancelled. Items already taken into a batch run on. Returns how many
        were dropped."""
        targets = {id(f) for f in futures}
        with self._cond:
            kept: deque[tuple[T, Future[R], float]] = deque()
            dropped: list[Future[R]] = []
            for entry in self._pending:
                if id(entry[1]) in targets:
                    dropped.append(entry[1])
                else:
                    kept.append(entry)
            self._pending = kept
        for future in dropped:
            future.cancel()
        return len(dropped)

    def close(self, timeout: float = 30.0) -> None:
        """Finish what is queued, then stop the worker."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        if self._finisher is not None:
            self._finisher.shutdown(wait=True)

    def _take_batch(self) -> list[tuple[T, Future[R], float]] | None:
        with self._cond:
            while True:
                while not self._pending:
                    if self._closed:
                        return None
                    self._cond.wait()
                deadline = self._pending[0][2] + self.max_delay_s
                while 0 < len(self._pending) < self.max_batch and not self._closed:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
                if not self._pending:  # another worker took them
                    continue
                count = min(self.max_batch, len(self._pending))
                batch = [self._pending.popleft() for _ in range(count)]
                if self._pending:
                    self._cond.notify()  # more for an idle worker
                return batch

    def _work(self) -> None:
        while (batch := self._take_batch()) is not None:
            started = time.perf_counter()
            items = [item for item, _, _ in batch]
            try:
                outputs = self._run_batch(items)
            except BaseException as exc:  # the requests get the error; the worker lives on
                self._fail(batch, exc)
                continue
            run_s = time.perf_counter() - started
            if self._on_batch:
                self._on_batch(len(batch), run_s)
            if self._finisher is None or self._finish is None:
                self._deliver(batch, outputs, run_s)
            else:
                self._finisher.submit(self._finish_batch, self._finish, batch, items, outputs, run_s)

    def _finish_batch(
        self,
        finish: Callable[[list[T], list[Any]], list[R]],
        batch: list[tuple[T, Future[R], float]],
        items: list[T],
        outputs: list[Any],
        run_s: float,
    ) -> None:
        try:
            results = finish(items, outputs)
        except BaseException as exc:
            self._fail(batch, exc)
            return
        self._deliver(batch, results, run_s)

    @staticmethod
    def _deliver(batch: list[tuple[T, Future[R], float]], results: list[Any], run_s: float) -> None:
        """Each result gets `model_ms`: the model run of the batch that held it (the queue not included)."""
        model_ms = round(run_s * 1000, 2)
        for (_, future, _), result in zip(batch, results, strict=True):
            if isinstance(result, dict):
                result.setdefault("model_ms", model_ms)
            future.set_result(result)

    @staticmethod
    def _fail(batch: list[tuple[T, Future[R], float]], exc: BaseException) -> None:
        for _, future, _ in batch:
            future.set_exception(exc)
