"""Outages of the consumer's dependencies (inference, storage, the results and dead-letter topics): work
that failed for one is retried with a jittered exponential backoff, never dead-lettered, and an outage
longer than CONSUMER_UNHEALTHY_AFTER_S makes /healthz answer 503 with why, until the dependency answers."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from prometheus_client import Counter

from vidpipe.member import GroupMember, Stopped

log = logging.getLogger(__name__)

R = TypeVar("R")


class Outages:
    def __init__(self, member: GroupMember, unhealthy_after_s: float, retries: Counter):
        self.member = member
        self.unhealthy_after_s = unhealthy_after_s
        self.retries = retries
        self._began: dict[str, float] = {}  # dependency -> when its current outage began
        self._lock = threading.Lock()  # worker threads and the polling thread report outages

    def retry(self, dependency: str, action: Callable[[], R], retry_on: tuple[type[BaseException], ...]) -> R:
        """Retry with jittered exponential backoff while `dependency` is out (retry_on), until done or
        stopping (then Stopped)."""
        backoff = self.member.backoff()
        while True:
            try:
                result = action()  # work that can finish does, even while stopping
            except retry_on as exc:
                if self.member.stopping:
                    raise Stopped() from exc
                self.retries.labels(dependency, str(getattr(exc, "cause", None) or type(exc).__name__)).inc()
                self.continues(dependency, str(exc))
                delay = backoff.next()
                log.warning("%s unavailable (%s); retrying in %.1fs, nothing committed", dependency, exc, delay)
                self.member.sleep(delay)
            else:
                self.over(dependency)
                return result

    def continues(self, dependency: str, reason: str, since: float | None = None) -> None:
        """`dependency` failed again (since: when the attempt that just failed began, if earlier)."""
        now = time.monotonic()
        with self._lock:
            began = min(self._began.get(dependency, now), since if since is not None else now)
            self._began[dependency] = began
            lasted = now - began
            if lasted >= self.unhealthy_after_s:
                self.member.heartbeat.unhealthy_reason = f"{dependency} unavailable for {lasted:.0f}s: {reason[:300]}"

    def over(self, dependency: str) -> None:
        with self._lock:
            if self._began.pop(dependency, None) is not None and not self._began:
                self.member.heartbeat.unhealthy_reason = None
