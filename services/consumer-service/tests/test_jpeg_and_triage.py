"""Consumer triage: what goes to inference, what to the dead-letter topic (with which reason)."""

import cv2
import numpy as np
import pytest

from consumer_service.results import ResultRefused, result_document
from consumer_service.triage import Accepted, Rejected, Stale, triage
from tests import jpeg_craft
from vidpipe.contract import FrameMeta
from vidpipe.image_header import (
    MAX_SCANS,
    SCANS_AT_PIXEL_LIMIT,
    NotAJpeg,
    TooManyScans,
    UnsupportedJpeg,
    bounded_jpeg_size,
    count_scans,
    jpeg_size,
    scans_allowed,
)


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


# Decode cost: scans. Each scan costs the decoder a pass over the image's blocks however few bytes it holds,
# so the header check counts them (tests/jpeg_craft.py builds the files: real progressive JPEGs plus scans).


@pytest.fixture(scope="module")
def progressive():
    return jpeg_craft.progressive_jpeg(64, 48, flat=False)


def test_real_progressive_and_baseline_files_pass_the_scan_check(jpeg, progressive):
    assert count_scans(progressive) == 10  # libjpeg's progressive script for YCbCr
    assert bounded_jpeg_size(progressive) == (64, 48)
    assert bounded_jpeg_size(jpeg) == (64, 48) and count_scans(jpeg) == 1


def test_a_scan_bomb_is_refused_before_decoding_and_the_limit_is_exact(progressive):
    at_limit = jpeg_craft.with_scans(progressive, MAX_SCANS - 10)
    assert bounded_jpeg_size(at_limit) == (64, 48)
    # The crafted scans are real ones: the decoder reads them all and returns the picture.
    assert cv2.imdecode(np.frombuffer(at_limit, np.uint8), cv2.IMREAD_COLOR).shape == (48, 64, 3)
    with pytest.raises(TooManyScans, match=f"more than {MAX_SCANS} scans"):
        bounded_jpeg_size(jpeg_craft.with_scans(progressive, MAX_SCANS - 9))
    with pytest.raises(TooManyScans, match="64x48"):
        bounded_jpeg_size(jpeg_craft.with_scans(progressive, 5000, refine=True))


def test_large_frames_get_fewer_scans_so_scans_times_pixels_stays_bounded():
    assert scans_allowed(64, 48) == MAX_SCANS
    assert scans_allowed(4096, 2160) == SCANS_AT_PIXEL_LIMIT  # a frame at the pixel budget
    assert scans_allowed(1920, 1080) == MAX_SCANS
    assert scans_allowed(1920, 1080, max_pixels=1920 * 1080) == SCANS_AT_PIXEL_LIMIT  # the budget is a setting
    big = jpeg_craft.progressive_jpeg(4096, 2160)
    assert bounded_jpeg_size(jpeg_craft.with_scans(big, SCANS_AT_PIXEL_LIMIT - 10, refine=True)) == (4096, 2160)
    with pytest.raises(TooManyScans, match=f"more than {SCANS_AT_PIXEL_LIMIT} scans .* 4096x2160"):
        bounded_jpeg_size(jpeg_craft.with_scans(big, SCANS_AT_PIXEL_LIMIT - 9, refine=True))


def test_scans_are_counted_after_the_frame_header_only(progressive):
    """An EXIF thumbnail (APP1, before the frame header) is a whole JPEG with its own scans: not this image's."""
    thumbnail = b"Exif\x00\x00" + progressive * 8  # 80 scans' markers
    data = jpeg_craft.segment_before_frame(progressive, 0xE1, thumbnail)
    assert bounded_jpeg_size(data) == (64, 48)
    assert count_scans(data) > MAX_SCANS  # counted from the start they would be too many


def test_count_scans_is_an_upper_bound_that_stops_at_the_limit(progressive):
    assert count_scans(progressive, limit=3) == 4  # stops at limit + 1
    assert count_scans(b"\xff\xda\xff\xff\xda" + b"\x00" * 100) == 2  # fill bytes before a marker still count
    assert count_scans(memoryview(b"\x00\xff\xda")) == 1  # any buffer, as the services receive them


@pytest.mark.parametrize(
    "marker, kind", [(0xC9, "arithmetic-coded"), (0xCA, "arithmetic-coded"), (0xC3, "lossless"), (0xC5, "hierarchical")]
)
def test_coding_processes_whose_cost_is_unbounded_are_refused(progressive, marker, kind):
    with pytest.raises(UnsupportedJpeg, match=f"{kind} JPEG \\(SOF{marker - 0xC0}\\)"):
        bounded_jpeg_size(jpeg_craft.with_process(progressive, marker))


def test_triage_dead_letters_scan_bombs_and_arithmetic_coding_with_their_reasons(progressive):
    bomb = triage(jpeg_craft.with_scans(progressive, 2000), headers(), 1 << 20, now_us=NOW_US)
    assert isinstance(bomb, Rejected) and (bomb.code, bomb.stage) == ("too_many_scans", "validate")
    assert "more than 64 scans" in bomb.reason
    arithmetic = triage(jpeg_craft.with_process(progressive, 0xCA), headers(), 1 << 20, now_us=NOW_US)
    assert isinstance(arithmetic, Rejected) and arithmetic.code == "not_a_jpeg" and "arithmetic" in arithmetic.reason
    assert isinstance(triage(progressive, headers(), 1 << 20, now_us=NOW_US), Accepted)
    # The scan budget follows the consumer's pixel budget (CONSUMER_MAX_PIXELS).
    crowded = jpeg_craft.with_scans(progressive, 30)  # 40 scans
    assert isinstance(triage(crowded, headers(), 1 << 20, now_us=NOW_US), Accepted)
    tight = triage(crowded, headers(), 1 << 20, now_us=NOW_US, max_pixels=64 * 48)
    assert isinstance(tight, Rejected) and tight.code == "too_many_scans"
