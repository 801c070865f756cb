"""Jittered exponential backoff, the one every service waits with (an outage, a reconnect, a redelivery):
initial_s, doubled per attempt, times a random factor in [0.8, 1.2] so that members failing together do
not retry together, and never above max_s: a configured maximum is the longest anyone waits."""

from __future__ import annotations

import random
from collections.abc import Callable

Jitter = Callable[[float, float], float]


def backoff_delay(attempt: int, initial_s: float, max_s: float, jitter: Jitter = random.uniform) -> float:
    """The wait before try attempt+1 (attempt counts from 1)."""
    return float(min(min(initial_s * 2 ** max(attempt - 1, 0), max_s) * jitter(0.8, 1.2), max_s))


class Backoff:
    """Successive waits of one retry loop: next() gives the wait after each failure, reset() after a
    success starts over at initial_s."""

    def __init__(self, initial_s: float, max_s: float, jitter: Jitter = random.uniform) -> None:
        self.initial_s, self.max_s, self.jitter = initial_s, max_s, jitter
        self.attempts = 0

    def next(self) -> float:
        self.attempts += 1
        return backoff_delay(self.attempts, self.initial_s, self.max_s, self.jitter)

    def reset(self) -> None:
        self.attempts = 0
