"""Publisher core: sampling to a target rate, sizing, and the live drop-oldest buffer."""

import pytest

from frame_publisher.sampling import DropOldestBuffer, FrameSampler, output_size
from frame_publisher.settings import PublisherSettings


@pytest.mark.parametrize(
    "source_fps, target_fps, expected", [(25, 5, 50), (25, 0, 250), (25, 25, 250), (30, 10, 100), (10, 25, 100)]
)
def test_sampler_approaches_target_rate(source_fps, target_fps, expected):
    sampler = FrameSampler(target_fps)
    frames = 10 * source_fps
    kept = sum(sampler.keep(i / source_fps) for i in range(frames))
    assert abs(kept - expected) <= 1


def test_output_size_keeps_aspect_when_only_width_given():
    assert output_size(640, 272, (320, None)) == (320, 136)
    assert output_size(640, 272, (1280, 720)) == (1280, 720)
    assert output_size(640, 272, None) == (640, 272)


def test_drop_oldest_buffer_never_blocks_and_counts():
    buffer = DropOldestBuffer(capacity=3)
    for i in range(10):
        buffer.put(i)
    assert buffer.dropped == 7
    assert [buffer.get(0), buffer.get(0), buffer.get(0)] == [7, 8, 9]
    buffer.close()
    assert buffer.get(0) is None and buffer.closed_and_empty


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("resize", "1280by720", "WIDTHxHEIGHT"),
        ("stream_id", "a/b", "letters"),
        ("jpeg_quality", 0, "greater than or equal to 1"),
    ],
)
def test_settings_reject_bad_values(field, value, message):
    with pytest.raises(ValueError, match=message):
        PublisherSettings(source="x.mp4", **{field: value})


def test_metrics_report_the_running_counts():
    from prometheus_client import CollectorRegistry, generate_latest

    from frame_publisher.metrics import PublisherCollector
    from frame_publisher.publisher import PublishSummary

    summary = PublishSummary(
        stream_id="lobby",
        source="rtsp://***@cam/stream",
        frames_read=12,
        frames_published=10,
        frames_delivered=9,
        frames_dropped=2,
        last_published_unix_s=1796600000.5,
    )
    registry = CollectorRegistry()
    registry.register(PublisherCollector(lambda: summary, lambda: 3))
    text = generate_latest(registry).decode()
    for line in (
        'publisher_frames_published_total{stream="lobby"} 10.0',
        'publisher_frames_delivered_total{stream="lobby"} 9.0',
        'publisher_frames_dropped_total{stream="lobby"} 2.0',
        'publisher_reconnects_total{stream="lobby"} 3.0',
        'publisher_last_frame_timestamp_seconds{stream="lobby"} 1.7966000005e+09',
    ):
        assert line in text, text
