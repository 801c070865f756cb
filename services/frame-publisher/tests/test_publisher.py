"""The publisher process against the real broker: what lands on the frames topic, and clear
errors for sources that cannot be read."""

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

from tests.fixtures.pipeline import topic_env
from tests.helpers import TurnsFatal, read_all, turn_fatal_after
from tools.harness.processes import publisher_process, service_env
from vidpipe.contract import parse_frame_headers
from vidpipe.image_header import jpeg_size

pytestmark = pytest.mark.broker


def run_publisher(bootstrap, topics, source, tmp_path, *args) -> tuple[int, dict | None, str]:
    summary = tmp_path / "summary.json"
    process = publisher_process(
        bootstrap, source, tmp_path, [*args, "--summary-file", str(summary)], **topic_env(topics)
    )
    code = process.start().process.wait(120)
    return code, json.loads(summary.read_text()) if summary.exists() else None, process.log_tail(50)


def test_video_frames_land_keyed_by_stream_with_contract_headers(
    kafka_bootstrap, kafka_settings, topics, sample_video, tmp_path
):
    code, summary, log = run_publisher(
        kafka_bootstrap,
        topics,
        sample_video,
        tmp_path,
        "--stream-id",
        "cam-7",
        "--pace",
        "fast",
        "--max-frames",
        "30",
        "--target-fps",
        "5",
        "--resize",
        "320",
    )
    assert code == 0, log
    # bikes.mp4 is 25 fps: sampling to 5 fps keeps one frame in five.
    assert summary["frames_published"] == summary["frames_delivered"] == 30
    assert summary["frames_read"] >= 146 and summary["frames_sampled_out"] >= 116
    records = read_all(kafka_settings, topics.frames, expect=30)
    metas = sorted((parse_frame_headers(r.headers()) for r in records), key=lambda m: m.seq)
    assert [m.seq for m in metas] == list(range(30))
    assert {r.key() for r in records} == {b"cam-7"}
    assert len({r.partition() for r in records}) == 1  # one stream, one partition: order kept
    for record in records:
        meta = parse_frame_headers(record.headers())
        assert jpeg_size(record.value()) == (meta.width, meta.height) == (320, 136)


def test_image_folder_source(kafka_bootstrap, kafka_settings, topics, tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(5):
        cv2.imwrite(str(folder / f"{i:03d}.png"), np.full((60, 80, 3), i * 40, np.uint8))
    (folder / "notes.txt").write_text("not an image")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    code, summary, log = run_publisher(kafka_bootstrap, topics, folder, tmp_path, "--pace", "fast")
    assert code == 0, log
    assert summary["frames_published"] == 5 and summary["stream_id"] == "images"
    assert "skipping" in log and "broken.jpg" in log


def write(path, data: bytes):
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    "make_source, message",
    [
        (lambda d: d / "missing.mp4", "does not exist"),
        (lambda d: write(d / "empty.mp4", b""), "cannot open"),
        (lambda d: write(d / "junk.mp4", b"\x00" * 4096), "cannot open"),
        (lambda d: d, "has no images"),
        (lambda d: "webcam:57", "cannot open webcam 57"),
    ],
)
def test_unreadable_sources_exit_nonzero_with_clear_error(kafka_bootstrap, topics, tmp_path, make_source, message):
    source = make_source(tmp_path)
    code, _, log = run_publisher(kafka_bootstrap, topics, source, tmp_path)
    assert code == 1 and message in log, log


def test_truncated_video_is_reported(kafka_bootstrap, topics, sample_video, tmp_path):
    data = sample_video.read_bytes()
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(data[: len(data) // 2])
    code, summary, log = run_publisher(kafka_bootstrap, topics, truncated, tmp_path, "--pace", "fast")
    assert code == 1 and ("truncated" in log or "cannot open" in log), log


def test_missing_bootstrap_is_named(tmp_path):
    env = service_env(PUBLISHER_SOURCE="x.mp4")
    env.pop("KAFKA_BOOTSTRAP", None)
    result = subprocess.run(
        [sys.executable, "-m", "frame_publisher"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2 and "KAFKA_BOOTSTRAP: is required" in result.stderr


def test_a_fatal_producer_error_is_replaced_and_publishing_goes_on(kafka_settings, topics, sample_video):
    import threading

    from frame_publisher.publisher import FramePublisher
    from frame_publisher.settings import PublisherSettings
    from frame_publisher.sources import VideoFileSource

    settings = PublisherSettings(_env_file=None, source=str(sample_video), pace="fast", max_frames=30)
    publisher = FramePublisher(settings, kafka_settings, topics.frames, threading.Event())
    turn_fatal_after(publisher.producers, healthy=10)
    summary = publisher.run(VideoFileSource(str(sample_video)), stream_id="fatal")
    assert summary.producer_restarts == 1 and not isinstance(publisher.producer, TurnsFatal)
    assert summary.frames_published == 30, "the stream went on after the failure"
    assert summary.frames_delivered + summary.frames_failed == 30, "every frame is accounted for"

    # A frame the failed producer held counts as failed, though the broker may have it: read by seq.
    def seqs_of(found) -> set[int]:
        return {parse_frame_headers(r.headers()).seq for r in found}

    seqs = seqs_of(
        read_all(kafka_settings, topics.frames, 0, 30, until=lambda found: seqs_of(found) >= set(range(10, 30)))
    )
    assert set(range(10, 30)) <= seqs, "frames after the failure went through the new producer"
