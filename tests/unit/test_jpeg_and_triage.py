"""Consumer triage: what goes to inference, what to the dead-letter topic (with which reason)."""
import cv2
import numpy as np
import pytest

from consumer_service.triage import Accepted, Rejected, Stale, result_document, triage
from vidpipe.contract import FrameMeta
from vidpipe.jpeg import NotAJpeg, jpeg_size


@pytest.fixture(scope="module")
def jpeg():
    image = np.zeros((48, 64, 3), np.uint8)
    cv2.rectangle(image, (5, 5), (40, 30), (0, 200, 255), -1)
    return cv2.imencode(".jpg", image)[1].tobytes()


def headers(width=64, height=48, ts=1_000_000):
    return FrameMeta("cam", 7, ts, width, height).headers()


def test_jpeg_size_reads_sof(jpeg):
    assert jpeg_size(jpeg) == (64, 48)


@pytest.mark.parametrize("data, reason", [(b"GIF89a....", "start-of-image"), (b"\xff\xd8", "too short")])
def test_not_a_jpeg(data, reason):
    with pytest.raises(NotAJpeg, match=reason):
        jpeg_size(data)


def test_truncated_jpeg_is_detected(jpeg):
    with pytest.raises(NotAJpeg, match="truncated"):
        jpeg_size(jpeg[: len(jpeg) // 2] + b"\x00\x00")


def test_good_frame_is_accepted(jpeg):
    verdict = triage(jpeg, headers(), max_frame_bytes=1 << 20)
    assert isinstance(verdict, Accepted) and verdict.meta.seq == 7


@pytest.mark.parametrize(
    "value, hdrs, reason",
    [
        (b"", None, "empty"),
        (None, None, "empty"),
        (b"x" * 2048, None, "over the 1024-byte frame limit"),
        (b"\xff\xd8\xff\xe0 corrupt", "ok", "corrupt JPEG"),
        ("jpeg", [], "schema-version"),
        ("jpeg", "wrong-size", "headers say 640x480"),
    ],
)
def test_bad_records_are_rejected_with_reason(jpeg, value, hdrs, reason):
    value = jpeg if value == "jpeg" else value
    hdrs = headers() if hdrs == "ok" else headers(640, 480) if hdrs == "wrong-size" else hdrs
    verdict = triage(value, hdrs, max_frame_bytes=1024 if value == b"x" * 2048 else 1 << 20)
    assert isinstance(verdict, Rejected) and reason in verdict.reason


def test_stale_frames_are_skipped_only_when_configured(jpeg):
    old = headers(ts=1_000_000)
    assert isinstance(triage(jpeg, old, 1 << 20, max_frame_age_ms=500, now_us=2_000_000), Stale)
    assert isinstance(triage(jpeg, old, 1 << 20, max_frame_age_ms=0, now_us=2_000_000), Accepted)


def test_result_document_carries_frame_identity():
    meta = FrameMeta("cam", 3, 10, 640, 272, traceparent="00-" + "a" * 32 + "-" + "b" * 16 + "-01")
    doc = result_document(meta, {"detections": [], "inference_ms": 4.2}, "m", "v", 20)
    assert (doc["stream_id"], doc["seq"], doc["capture_ts_us"], doc["model_name"]) == ("cam", 3, 10, "m")
    assert doc["traceparent"] == meta.traceparent
