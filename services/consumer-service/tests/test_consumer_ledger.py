"""The consumer's ledger without a broker: commit order across partitions, replay after a failed
delivery, revocation mid-batch."""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass

from consumer_service.ledger import Ledger, Rewind

T = "frames"


@dataclass
class Rec:
    p: int
    o: int

    def topic(self) -> str:
        return T

    def partition(self) -> int:
        return self.p

    def offset(self) -> int:
        return self.o


def records(*pairs: tuple[int, int]) -> list[Rec]:
    return [Rec(p, o) for p, o in pairs]


def finish(batch, deliveries: int = 0, failed: str | None = None) -> None:
    """The batch's work is done and published, with deliveries still unacknowledged."""
    future: Future = Future()
    future.set_result(([], []))
    batch.work = future
    batch.published = True
    batch.pending_deliveries = deliveries
    batch.delivery_failed = failed


def ledger(*partitions: int) -> Ledger:
    led = Ledger()
    led.assign((T, p) for p in partitions)
    return led


def test_commits_the_highest_offset_per_partition_across_batches():
    led = ledger(0, 1)
    first = led.open(records((0, 10), (1, 5), (0, 11)))
    second = led.open(records((1, 6), (1, 7)))
    finish(first)
    finish(second)
    settled = led.settle()
    assert settled == [first, second]
    assert led.commit_offsets(settled) == {(T, 0): 12, (T, 1): 8}
    assert len(led) == 0


def test_a_later_batch_finished_first_waits_for_the_earlier_one_even_on_another_partition():
    led = ledger(0, 1)
    earlier = led.open(records((0, 1)))
    earlier.work = Future()  # still in inference
    later = led.open(records((1, 1)))
    finish(later)
    assert led.settle() == []  # partition 1 must not pass partition 0's unfinished record
    assert list(led.to_publish()) == []  # nothing to publish past the unfinished head either
    finish(earlier)
    assert led.settle() == [earlier, later]


def test_unacknowledged_deliveries_hold_the_commit():
    led = ledger(0)
    batch = led.open(records((0, 1)))
    finish(batch, deliveries=2)
    assert led.settle() == []
    batch.pending_deliveries = 0
    assert led.settle() == [batch]


def test_a_failed_delivery_rewinds_to_its_first_offsets_and_drops_later_batches():
    led = ledger(0, 1)
    good = led.open(records((0, 1), (0, 2)))
    failed = led.open(records((0, 3), (1, 9)))
    after = led.open(records((0, 4), (1, 10)))
    finish(good)
    finish(failed, failed="broker down")
    finish(after)
    assert led.settle() == [good]  # what came before the failure commits first
    rewind = led.settle()
    assert isinstance(rewind, Rewind) and rewind.reason == "broker down"
    assert rewind.offsets == {(T, 0): 3, (T, 1): 9}
    assert len(led) == 0  # the later batch's records come again after the seek


def test_revoked_partitions_are_never_committed_or_rewound():
    led = ledger(0, 1)
    batch = led.open(records((0, 5), (1, 5)))
    assert led.holds({(T, 1)})
    led.unassign([(T, 1)])  # revoked mid-batch
    finish(batch)
    assert led.commit_offsets(led.settle()) == {(T, 0): 6}
    other = led.open(records((0, 6), (1, 6)))
    finish(other, failed="x")
    rewind = led.settle()
    assert isinstance(rewind, Rewind) and rewind.offsets == {(T, 0): 6}


def test_batches_publish_in_poll_order_up_to_the_first_unfinished():
    led = ledger(0)
    a, b, c = (led.open(records((0, i))) for i in range(3))
    for batch in (a, b, c):
        batch.work = Future()
    for batch in (a, c):
        batch.work.set_result(([], []))
    assert list(led.to_publish()) == [a]  # b is still in inference: c waits behind it


def test_abandoning_rewinds_every_batch_finished_or_not_on_assigned_partitions():
    led = ledger(0, 1)
    finish(led.open(records((0, 10), (1, 5))), deliveries=1)  # published, not yet acknowledged
    led.open(records((0, 11), (2, 3)))  # still in inference; partition 2 is no longer ours
    rewind = led.abandon("producer failed")
    assert rewind == Rewind("producer failed", {(T, 0): 10, (T, 1): 5})
    assert len(led) == 0
