"""Counted budgets (bytes, pixels, frames) shared by concurrent requests, so that what all requests hold
at once is bounded and the service stays inside its memory limit whatever the clients send.

Budget is for worker threads (decoding runs there); AsyncBudget for the event loop (request bodies,
frames admitted). Both wait at most a timeout, then the request is answered 503 + Retry-After.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager


class BudgetExhausted(RuntimeError):
    """The budget stayed full for the whole wait: the service is overloaded, retry later."""


class Budget:
    """A thread-safe counted resource. An amount larger than the capacity is a caller's bug."""

    def __init__(self, capacity: int, name: str):
        self.capacity = capacity
        self.name = name
        self._in_use = 0
        self._cond = threading.Condition()

    @property
    def in_use(self) -> int:
        return self._in_use

    def acquire(self, amount: int, timeout_s: float) -> None:
        if amount > self.capacity:
            raise ValueError(f"{amount} exceeds the {self.name} budget of {self.capacity}")
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self._in_use + amount > self.capacity:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise BudgetExhausted(f"{self.name}: {self._in_use} of {self.capacity} in use")
                self._cond.wait(remaining)
            self._in_use += amount

    def release(self, amount: int) -> None:
        with self._cond:
            self._in_use -= amount
            self._cond.notify_all()

    @contextmanager
    def hold(self, amount: int, timeout_s: float) -> Iterator[None]:
        self.acquire(amount, timeout_s)
        try:
            yield
        finally:
            self.release(amount)


class AsyncBudget:
    """The same on one event loop (no locks needed: only the loop's thread touches it)."""

    def __init__(self, capacity: int, name: str):
        self.capacity = capacity
        self.name = name
        self._in_use = 0
        self._waiters: set[asyncio.Future[None]] = set()

    @property
    def in_use(self) -> int:
        return self._in_use

    def try_acquire(self, amount: int) -> bool:
        if self._in_use + amount > self.capacity:
            return False
        self._in_use += amount
        return True

    async def acquire(self, amount: int, timeout_s: float) -> None:
        if amount > self.capacity:
            raise ValueError(f"{amount} exceeds the {self.name} budget of {self.capacity}")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while not self.try_acquire(amount):
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise BudgetExhausted(f"{self.name}: {self._in_use} of {self.capacity} in use")
            waiter = loop.create_future()
            self._waiters.add(waiter)
            try:
                await asyncio.wait((waiter,), timeout=remaining)
            finally:
                self._waiters.discard(waiter)

    def release(self, amount: int) -> None:
        self._in_use -= amount
        waiters, self._waiters = self._waiters, set()
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    @asynccontextmanager
    async def hold(self, amount: int, timeout_s: float) -> AsyncIterator[None]:
        await self.acquire(amount, timeout_s)
        try:
            yield
        finally:
            self.release(amount)
