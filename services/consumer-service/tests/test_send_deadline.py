"""The consumer's max-frame-age decision at send time (pure core, no broker)."""

from consumer_service.deadline import SendDeadline


def test_a_fresh_pipeline_sends_anything_younger_than_the_limit_less_its_reserve():
    deadline = SendDeadline(max_age_ms=2000)
    assert deadline.in_time([0, 1700, 1800, 1900], frames_in_inference=0) == [True, True, True, False]


def test_frames_ahead_in_inference_shrink_the_budget():
    deadline = SendDeadline(max_age_ms=2000, ms_per_frame=40)
    batch = [50.0] * 16
    # 32 frames ahead + 16 in the batch at 40 ms each: 1920 ms of waiting, no room left.
    assert deadline.in_time(batch, frames_in_inference=32) == [False] * 16
    # Once those drain, the same batch is in time (640 ms of its own).
    assert deadline.in_time(batch, frames_in_inference=0) == [True] * 16


def test_the_cost_per_frame_is_learnt_and_jumps_up_on_a_slow_batch():
    deadline = SendDeadline(max_age_ms=2000)
    deadline.observe(round_trip_ms=640, load=16)
    assert deadline.ms_per_frame == 40
    deadline.observe(round_trip_ms=1600, load=16)  # a retry: 100 ms per frame, taken at once
    assert deadline.ms_per_frame == 100
    deadline.observe(round_trip_ms=640, load=16)  # then it decays
    assert 40 < deadline.ms_per_frame < 100


def test_an_empty_pipeline_never_starves_a_live_stream():
    # Even after a slow period, with nothing ahead a just-captured frame is sent.
    deadline = SendDeadline(max_age_ms=2000, ms_per_frame=100)
    assert deadline.in_time([0], frames_in_inference=0) == [True]
