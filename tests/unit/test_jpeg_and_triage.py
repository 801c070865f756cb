"""Consumer triage: what goes to inference, what to the dead-letter topic (with which reason)."""

import cv2
import numpy as np
import pytest

from consumer_service.triage import Accepted, Rejected, ResultRefused, Stale, result_document, triage
from vidpipe.contract import FrameMeta
from vidpipe.image_header import NotAJpeg, jpeg_size


@pytest.fixture(scope="module")
def jpeg():
    image = np.zeros((48, 64, 3), np.uint8)
    cv2.rectangle(image, (5, 5), (40, 30), (0, 200, 255), -1)
    return cv2.imencode(".jpg", image)[1].tobytes()


NOW_US = 1_795_000_000_000_000  # 2026-11-18, the consumer's clock in these tests
DAY_US = 24 * 3600 * 1_000_000


def headers(width=64, height=48, ts=NOW_US - 1_000_000):
    return FrameMeta("cam", 7, ts, width, height).headers()


def declaring(jpeg: bytes, width: int, height: int) -> bytes:
    """The same bytes with the frame header (SOF0) declaring another size: a dimension bomb."""
    sof = jpeg.index(b"\xff\xc0")
    return jpeg[: sof + 5] + height.to_bytes(2, "big") + width.to_bytes(2, "big") + jpeg[sof + 9 :]


def replace_header(hdrs, name, value: bytes):
    return [(k, value if k == name else v) for k, v in hdrs]


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
    verdict = triage(jpeg, headers(), max_frame_bytes=1 << 20, now_us=NOW_US)
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
    verdict = triage(value, hdrs, max_frame_bytes=1024 if value == b"x" * 2048 else 1 << 20, now_us=NOW_US)
    assert isinstance(verdict, Rejected) and reason in verdict.reason


# Hostile records: each is refused at triage, before any decoding, with a reason naming what is wrong
# and a code for the dead-letter topic's error-code header.
HOSTILE = [
    # (id, how to make (value, headers) from a good jpeg, expected code, text in the reason)
    ("bomb-12000", lambda j: (declaring(j, 12000, 12000), headers(12000, 12000)), "too_large", "12000x12000"),
    ("bomb-20000", lambda j: (declaring(j, 20000, 20000), headers(20000, 20000)), "too_large", "20000x20000"),
    ("bomb-40000", lambda j: (declaring(j, 40000, 40000), headers(40000, 40000)), "too_large", "40000x40000"),
    ("bomb-strip", lambda j: (declaring(j, 65000, 2), headers(65000, 2)), "too_large", "65000x2"),
    ("ts-far-future", lambda j: (j, headers(ts=250_000_000_000_000_000)), "invalid_timestamp", "capture-ts-us"),
    ("ts-two-days-ahead", lambda j: (j, headers(ts=NOW_US + 2 * DAY_US)), "invalid_timestamp", "capture-ts-us"),
    ("ts-before-2000", lambda j: (j, headers(ts=1_000_000)), "invalid_timestamp", "capture-ts-us"),
    (
        "ts-negative",
        lambda j: (j, replace_header(headers(), "capture-ts-us", b"-5")),
        "invalid_header",
        "capture-ts-us",
    ),
    (
        "seq-over-64-bit",
        lambda j: (j, replace_header(headers(), "seq", b"9223372036854775808")),
        "invalid_header",
        "'seq'",
    ),
    ("seq-huge", lambda j: (j, replace_header(headers(), "seq", b"9" * 40)), "invalid_header", "'seq'"),
    ("seq-exponent", lambda j: (j, replace_header(headers(), "seq", b"1e6")), "invalid_header", "'seq'"),
    ("seq-padded", lambda j: (j, replace_header(headers(), "seq", b" 7")), "invalid_header", "'seq'"),
    ("width-zero", lambda j: (j, replace_header(headers(), "width", b"0")), "invalid_header", "'width'"),
    ("height-huge", lambda j: (j, replace_header(headers(), "height", b"99999999999")), "invalid_header", "'height'"),
    (
        "non-ascii-header",
        lambda j: (j, replace_header(headers(), "stream-id", "caméra".encode())),
        "invalid_header",
        "not ASCII",
    ),
    ("oversized-header", lambda j: (j, headers() + [("x-junk", b"a" * 10_000)]), "invalid_header", "x-junk"),
    ("stream-id-slash", lambda j: (j, replace_header(headers(), "stream-id", b"cam/1")), "invalid_stream_id", "cam/1"),
    ("stream-id-dotdot", lambda j: (j, replace_header(headers(), "stream-id", b"..")), "invalid_stream_id", "'..'"),
    (
        "stream-id-too-long",
        lambda j: (j, replace_header(headers(), "stream-id", b"c" * 129)),
        "invalid_stream_id",
        "stream-id",
    ),
    ("stream-id-space", lambda j: (j, replace_header(headers(), "stream-id", b"cam 1")), "invalid_stream_id", "cam 1"),
    (
        "png-not-jpeg",
        lambda j: (cv2.imencode(".png", np.zeros((48, 64, 3), np.uint8))[1].tobytes(), headers()),
        "not_a_jpeg",
        "start-of-image",
    ),
    ("jpeg-trailing-garbage", lambda j: (j + b"garbage" * 10, headers()), "not_a_jpeg", "truncated"),
    ("jpeg-truncated", lambda j: (j[: len(j) // 2], headers()), "not_a_jpeg", "JPEG"),
    ("jpeg-fill-bytes", lambda j: (j[:2] + b"\xff" * 200_000 + j[2:], headers()), "not_a_jpeg", "fill bytes"),
    (
        "jpeg-tiny-segments",
        lambda j: (j[:2] + b"\xff\xfe\x00\x02" * 200_000 + j[2:], headers()),
        "not_a_jpeg",
        "segments",
    ),
    (
        "schema-version-2",
        lambda j: (j, replace_header(headers(), "schema-version", b"2")),
        "invalid_header",
        "schema-version",
    ),
]


@pytest.mark.parametrize("make, code, reason", [h[1:] for h in HOSTILE], ids=[h[0] for h in HOSTILE])
def test_hostile_records_are_refused_before_decoding_with_code_and_reason(jpeg, make, code, reason):
    value, hdrs = make(jpeg)
    verdict = triage(value, hdrs, max_frame_bytes=1 << 20, now_us=NOW_US)
    assert isinstance(verdict, Rejected), verdict
    assert (verdict.code, verdict.stage) == (code, "validate") and reason in verdict.reason, verdict


def test_pixel_budget_is_configurable(jpeg):
    big = declaring(jpeg, 3840, 2160)
    assert isinstance(triage(big, headers(3840, 2160), 1 << 20, now_us=NOW_US), Accepted)  # 4K passes by default
    verdict = triage(big, headers(3840, 2160), 1 << 20, now_us=NOW_US, max_pixels=1920 * 1080)
    assert isinstance(verdict, Rejected) and verdict.code == "too_large"


def test_an_invalid_traceparent_is_ignored_not_fatal(jpeg):
    verdict = triage(jpeg, replace_header(headers(), "traceparent", b"not-a-trace"), 1 << 20, now_us=NOW_US)
    assert isinstance(verdict, Accepted) and verdict.meta.traceparent == ""


def test_stale_frames_are_skipped_only_when_configured(jpeg):
    old = headers(ts=NOW_US - 1_000_000)
    assert isinstance(triage(jpeg, old, 1 << 20, max_frame_age_ms=500, now_us=NOW_US), Stale)
    assert isinstance(triage(jpeg, old, 1 << 20, max_frame_age_ms=0, now_us=NOW_US), Accepted)


def test_result_document_carries_frame_identity():
    meta = FrameMeta("cam", 3, 10, 640, 272, traceparent="00-" + "a" * 32 + "-" + "b" * 16 + "-01")
    doc = result_document(meta, {"detections": [], "model_ms": 3.0, "request_ms": 4.2}, "m", "v", 20)
    assert (doc["stream_id"], doc["seq"], doc["capture_ts_us"], doc["model_name"]) == ("cam", 3, 10, "m")
    assert doc["traceparent"] == meta.traceparent
    assert "outputs" not in doc  # a detector's result has no raw outputs


def test_result_document_carries_raw_outputs():
    meta = FrameMeta("cam", 3, NOW_US, 64, 48)
    outputs = {
        "logits": {"shape": [3], "dtype": "float32", "data": [0.1, 0.7, 0.2], "min": 0.1, "max": 0.7, "mean": 0.33}
    }
    doc = result_document(meta, {"outputs": outputs, "request_ms": 1.0}, "raw-model", "abc", NOW_US)
    assert doc["outputs"]["logits"]["data"] == [0.1, 0.7, 0.2] and doc["detections"] == []


@pytest.mark.parametrize(
    "inferred, code",
    [
        ({"detections": [{"class_id": 0, "label": "car", "score": 7.0, "box": [0, 0, 1, 1]}]}, "invalid_result"),
        ({"detections": "nonsense"}, "invalid_result"),
        (
            {"outputs": {"heatmap": {"shape": [1000, 1000], "dtype": "float32", "data": [[0.5] * 1000] * 1000}}},
            "result_too_large",
        ),
    ],
)
def test_answers_that_cannot_be_results_are_refused_with_a_code(inferred, code):
    with pytest.raises(ResultRefused) as refused:
        result_document(FrameMeta("cam", 3, NOW_US, 64, 48), inferred, "m", "v", NOW_US)
    assert refused.value.code == code
