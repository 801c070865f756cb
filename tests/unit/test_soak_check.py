"""The soak's end-of-run checks catch what they are for: a frame without a result, two frames under one
identity, an object with a second version, and analytics events that a replay of the results does not
make; and they accept what at-least-once delivery legitimately produces."""

from analytics_service.engine import StreamAnalyzer, TrackerSettings
from tests.analytics_support import GATE, PEN, passage_docs
from tools.soak.check import check_identities, check_versions, replay_stream
from vidpipe.analytics_config import AnalyticsConfig
from vidpipe.contract import FrameId, FrameResult

CONFIG = AnalyticsConfig.model_validate({"streams": {"cam": {"lines": [GATE], "zones": [PEN]}}})
T0 = 1_760_000_000_000_000
EPOCH_1, EPOCH_2 = T0 - 10_000_000, T0 + 60_000_000


def results(epoch: int, first_seq: int, start_us: int, passages: int = 2) -> list[FrameResult]:
    docs = []
    for p in range(passages):
        docs += passage_docs("cam", first_seq + 32 * p, start_us + p * 32 * 40_000)
    return [FrameResult.model_validate({**d, "epoch": epoch}) for d in docs]


def run_service(lives: list[list[FrameResult]]) -> list:
    """The events a service delivers when each life starts afresh on the given results, in order."""
    events = []
    for life in lives:
        analyzer = StreamAnalyzer("cam", CONFIG.for_stream("cam"), TrackerSettings())
        for result in life:
            events.extend(analyzer.process(result, now_us=result.processed_ts_us).events)
    return events


def test_a_restarted_publisher_keeps_every_identity_and_a_conflict_is_caught():
    run_1 = results(EPOCH_1, 0, T0, passages=1)
    run_2 = results(EPOCH_2, 0, T0 + 70_000_000, passages=1)  # seq starts again at 0
    published = {r.identity: r.capture_ts_us for r in run_1 + run_2}
    assert len(published) == 64
    check = check_identities(published, run_1 + run_2 + run_1[:5])  # five redelivered
    assert check.ok and check.with_results == 64 and check.duplicate_results == 5

    without_epochs = {(r.stream_id, r.seq): r for r in run_1 + run_2}  # what an identity without epoch keeps
    assert len(without_epochs) == 32

    clash = run_2[3].model_copy(update={"epoch": EPOCH_1})  # another frame under run 1's identity
    check = check_identities(published, run_1 + run_2[:3] + [clash] + run_2[4:])
    assert check.conflicting == [FrameId("cam", EPOCH_1, 3)] and check.missing == [FrameId("cam", EPOCH_2, 3)]


def test_a_second_version_or_a_delete_marker_fails_the_check():
    assert check_versions(["frames/a/1.jpg", "results/a/1.jsonl"], [], "frames/").ok
    several = check_versions(["frames/a/1.jpg", "frames/a/1.jpg"], [], "frames/")
    assert not several.ok and several.with_several_versions == ["frames/a/1.jpg"]
    assert not check_versions(["frames/a/1.jpg"], ["frames/a/1.jpg"], "frames/").ok


def test_events_equal_the_replay_across_a_restart_with_overlap_and_redelivered_copies():
    stream = results(EPOCH_1, 0, T0) + results(EPOCH_2, 0, T0 + 70_000_000)
    # The service died after frame 40 and its successor started again at frame 20 (its last commit);
    # the consumer also delivered frames 10-14 twice.
    first_life, second_life = stream[:41], stream[20:]
    events = run_service([first_life, second_life])
    redelivered = events[:3]
    replay = replay_stream("cam", stream + stream[10:15], events + redelivered, CONFIG)
    assert replay.ok, (replay.only_service, replay.only_replay)
    assert replay.tracker_lives == 2 and replay.overlap_events > 0
    assert replay.counts["lines"]["gate"]["in"] == {"person": 4}


def test_an_event_the_replay_does_not_make_fails_the_check():
    stream = results(EPOCH_1, 0, T0)
    events = run_service([stream])
    crossing = next(e for e in events if e.type == "line_crossed")
    forged = crossing.model_copy(update={"direction": "out"})
    replay = replay_stream("cam", stream, [*events, forged], CONFIG)
    assert not replay.ok and replay.only_service and not replay.only_replay

    missing = replay_stream("cam", stream, [e for e in events if e is not crossing], CONFIG)
    assert not missing.ok and missing.only_replay
