"""Pure frame-selection and sizing logic (no capture, no broker)."""

from __future__ import annotations

from collections import deque
from threading import Condition
from typing import Generic, TypeVar

T = TypeVar("T")


class FrameSampler:
    """Keeps frames so the output rate approaches target_fps, using source timestamps."""

    def __init__(self, target_fps: float):
        self.interval_s = 1.0 / target_fps if target_fps > 0 else 0.0
        self._next_s: float | None = None

    def keep(self, timestamp_s: float) -> bool:
        if self.interval_s == 0.0:
            return True
        if self._next_s is None or timestamp_s >= self._next_s - 1e-6:
            # Advance on a fixed grid so the long-run rate is exact, but never fall behind it.
            base = timestamp_s if self._next_s is None else max(self._next_s, timestamp_s - self.interval_s)
            self._next_s = base + self.interval_s
            return True
        return False


def output_size(width: int, height: int, resize: tuple[int, int | None] | None) -> tuple[int, int]:
    if resize is None:
        return width, height
    target_w, target_h = resize
    if target_h is None:
        target_h = max(1, round(height * target_w / width))
    return target_w, target_h


class DropOldestBuffer(Generic[T]):
    """Bounded hand-off from a live capture loop: put never blocks; when full, the oldest goes."""

    def __init__(self, capacity: int):
        self._items: deque[T] = deque()
        self.capacity = capacity
        self.dropped = 0
        self._closed = False
        self._cond = Condition()

    def put(self, item: T) -> None:
        with self._cond:
            if len(self._items) >= self.capacity:
                self._items.popleft()
                self.dropped += 1
            self._items.append(item)
            self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def get(self, timeout: float | None = None) -> T | None:
        """The oldest item, or None once closed and drained (or on timeout)."""
        with self._cond:
            if not self._items and not self._closed:
                self._cond.wait(timeout)
            return self._items.popleft() if self._items else None

    def drop_oldest(self) -> bool:
        with self._cond:
            if not self._items:
                return False
            self._items.popleft()
            self.dropped += 1
            return True

    @property
    def closed_and_empty(self) -> bool:
        with self._cond:
            return self._closed and not self._items

    def __len__(self) -> int:
        return len(self._items)
