"""The consumer's batch ledger: which records were polled, in which order, what is finished, what may
be committed and where to rewind. Pure bookkeeping (no broker, no threads), so commit ordering,
replay after a failed delivery and revocation are unit-tested on their own.

At-least-once rests on three rules kept here:
- batches leave the ledger in poll order, so a partition's committed offset never passes a record
  whose result or dead letter is not yet acknowledged by the broker;
- a batch whose records the cluster did not take (a missing topic, a denied write) keeps them and
  produces them again, after a backoff, until they are delivered: nothing is re-inferred or re-archived;
- a batch whose producer failed fatally rewinds its partitions to its first offsets (and drops every
  later batch, whose records come again);
- offsets are only committed for partitions still assigned to this member.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Protocol

TopicPartitionKey = tuple[str, int]


class Record(Protocol):
    def topic(self) -> str | None: ...

    def partition(self) -> int | None: ...

    def offset(self) -> int | None: ...


@dataclass(eq=False)
class Batch:
    records: list[Any]
    offsets: dict[TopicPartitionKey, int]  # next offset to commit, per partition
    first_offsets: dict[TopicPartitionKey, int]  # where to rewind to, per partition
    accepted: list[Any] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)
    work: Future[Any] | None = None  # inference + archive, on a worker thread
    published: bool = False  # its results and dead letters are handed to the producer
    pending_deliveries: int = 0
    delivery_failed: str | None = None  # its producer failed fatally: rewind
    undelivered: list[Any] = field(default_factory=list)  # records the cluster did not take, to produce again
    abandoned: bool = False  # rewound: late delivery reports of its records change nothing
    results_count: int = 0
    sent: float = 0.0  # when its frames went to inference
    load: int = 0  # frames in inference when it was sent, its own included

    def ready(self) -> bool:
        return self.work is None or self.work.done()

    def delivered(self) -> bool:
        return self.published and self.pending_deliveries == 0 and not self.undelivered

    def partitions(self) -> set[TopicPartitionKey]:
        return set(self.offsets)


@dataclass(frozen=True)
class Rewind:
    """A delivery failed: seek these partitions back to these offsets; the batches are gone."""

    reason: str
    offsets: dict[TopicPartitionKey, int]


def partition_offsets(records: Iterable[Record]) -> tuple[dict[TopicPartitionKey, int], dict[TopicPartitionKey, int]]:
    nexts: dict[TopicPartitionKey, int] = {}
    firsts: dict[TopicPartitionKey, int] = {}
    for record in records:
        key = (str(record.topic()), int(record.partition() or 0))
        offset = int(record.offset() or 0)
        nexts[key] = max(nexts.get(key, -1), offset + 1)
        firsts[key] = min(firsts.get(key, offset), offset)
    return nexts, firsts


class Ledger:
    def __init__(self, assigned: set[TopicPartitionKey] | None = None) -> None:
        """assigned: the partitions this member owns, when kept elsewhere too (shared, not copied)."""
        self._batches: deque[Batch] = deque()
        self.assigned: set[TopicPartitionKey] = assigned if assigned is not None else set()

    def __len__(self) -> int:
        return len(self._batches)

    def __iter__(self) -> Iterator[Batch]:
        return iter(self._batches)

    @property
    def head(self) -> Batch | None:
        return self._batches[0] if self._batches else None

    def open(self, records: list[Any]) -> Batch:
        nexts, firsts = partition_offsets(records)
        batch = Batch(records, nexts, firsts)
        self._batches.append(batch)
        return batch

    def to_publish(self) -> Iterator[Batch]:
        """Finished, unpublished batches in poll order, up to the first unfinished one."""
        for batch in self._batches:
            if not batch.ready():
                return
            if not batch.published:
                yield batch

    def settle(self) -> list[Batch] | Rewind:
        """Remove the delivered batches at the head, in order, to be committed; or, when the first of
        them failed its delivery, forget it and all after it and say where to rewind."""
        done: list[Batch] = []
        while self._batches and self._batches[0].delivered():
            batch = self._batches[0]
            if batch.delivery_failed:
                if done:  # commit what came before it first; the failure is settled next time
                    return done
                return self._rewind(batch.delivery_failed)
            done.append(self._batches.popleft())
        return done

    def abandon(self, reason: str) -> Rewind:
        """Forget every batch, finished or not, and say where to rewind so all of them come again."""
        return self._rewind(reason)

    def _rewind(self, reason: str) -> Rewind:
        firsts: dict[TopicPartitionKey, int] = {}
        for batch in self._batches:
            batch.abandoned = True
            for key, offset in batch.first_offsets.items():
                firsts[key] = min(firsts.get(key, offset), offset)
        self._batches.clear()
        return Rewind(reason, {key: offset for key, offset in firsts.items() if key in self.assigned})

    def commit_offsets(self, batches: Iterable[Batch]) -> dict[TopicPartitionKey, int]:
        """The offsets to commit for these settled batches: per partition the highest, assigned ones only."""
        offsets: dict[TopicPartitionKey, int] = {}
        for batch in batches:
            for key, offset in batch.offsets.items():
                offsets[key] = max(offsets.get(key, -1), offset)
        return {key: offset for key, offset in offsets.items() if key in self.assigned}

    def holds(self, partitions: set[TopicPartitionKey]) -> bool:
        """Whether any batch still holds records of these partitions."""
        return any(partitions & batch.partitions() for batch in self._batches)

    def assign(self, partitions: Iterable[TopicPartitionKey]) -> None:
        self.assigned.update(partitions)

    def unassign(self, partitions: Iterable[TopicPartitionKey]) -> None:
        self.assigned.difference_update(partitions)
