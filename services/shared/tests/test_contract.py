"""The message contract: what producers write is what consumers and the service accept."""

import pytest

from vidpipe.contract import (
    MAX_MESSAGE_BYTES,
    ContractError,
    FrameMeta,
    FrameResult,
    Header,
    dead_letter_headers,
    decode_batch,
    decode_result,
    encode_batch,
    encode_result,
    header_dict,
    parse_frame_headers,
    topic_specs,
)


def meta(**changes):
    base = dict(stream_id="cam-1", seq=42, capture_ts_us=1_700_000_000_000_000, width=640, height=272)
    base.update(changes)
    return FrameMeta(**base)


def test_headers_round_trip_with_traceparent():
    original = meta()
    parsed = parse_frame_headers(original.headers())
    assert (parsed.stream_id, parsed.seq, parsed.capture_ts_us, parsed.width, parsed.height) == (
        "cam-1",
        42,
        original.capture_ts_us,
        640,
        272,
    )
    version, trace_id, span_id, flags = parsed.traceparent.split("-")
    # Not sampled: only a tracing publisher asks the services after it to record a frame's trace.
    assert (version, len(trace_id), len(span_id), flags) == ("00", 32, 16, "00")


@pytest.mark.parametrize(
    "mutate, named",
    [
        (lambda h: [x for x in h if x[0] != Header.SEQ], "seq"),
        (lambda h: [(k, b"abc" if k == Header.WIDTH else v) for k, v in h], "width"),
        (lambda h: [(k, b"2" if k == Header.SCHEMA_VERSION else v) for k, v in h], "schema-version"),
        (lambda h: [(k, b"" if k == Header.STREAM_ID else v) for k, v in h], "stream-id"),
        (lambda h: [(k, b"image/png" if k == Header.CONTENT_TYPE else v) for k, v in h], "content-type"),
        (lambda h: [(k, b"-1" if k == Header.HEIGHT else v) for k, v in h], "height"),
        (lambda h: [], "schema-version"),
        (lambda h: [(k, b"-3" if k == Header.EPOCH else v) for k, v in h], "epoch"),
        (lambda h: [(k, b"1e15" if k == Header.EPOCH else v) for k, v in h], "epoch"),
    ],
)
def test_bad_headers_name_the_field(mutate, named):
    with pytest.raises(ContractError, match=named):
        parse_frame_headers(mutate(meta().headers()))


def test_a_frames_identity_carries_its_publisher_run():
    first_run, second_run = meta(epoch=1_700_000_000_000_000), meta(epoch=1_700_000_060_000_000)
    parsed = parse_frame_headers(second_run.headers())
    assert parsed.epoch == 1_700_000_060_000_000 and parsed.identity == ("cam-1", 1_700_000_060_000_000, 42)
    assert parse_frame_headers(first_run.headers()).identity != parsed.identity  # same seq, another run
    # A foreign producer that sends no epoch: epoch 0, the frame still accepted.
    without = [(k, v) for k, v in second_run.headers() if k != Header.EPOCH]
    assert parse_frame_headers(without).epoch == 0
    result = FrameResult.model_validate(
        {**{k: 0 for k in ("processed_ts_us", "width", "height", "request_ms")}, "stream_id": "cam-1", "seq": 42,
         "capture_ts_us": 1, "model_name": "m", "model_version": "1", "detections": [], "epoch": parsed.epoch}
    )  # fmt: skip
    assert decode_result(encode_result(result.model_dump())).identity == parsed.identity


def test_dead_letter_keeps_original_headers_and_adds_reason():
    original = meta().headers()
    headers = header_dict(dead_letter_headers(original, "corrupt JPEG", "validate", "frames", 3, 99))
    assert headers[Header.STREAM_ID] == "cam-1"
    assert headers[Header.ERROR_REASON] == "corrupt JPEG"
    assert (headers[Header.SOURCE_TOPIC], headers[Header.SOURCE_PARTITION], headers[Header.SOURCE_OFFSET]) == (
        "frames",
        "3",
        "99",
    )


def test_result_document_validates():
    doc = {
        "stream_id": "cam-1",
        "seq": 1,
        "capture_ts_us": 1,
        "processed_ts_us": 2,
        "width": 640,
        "height": 272,
        "model_name": "yolov4-tiny",
        "model_version": "x",
        "model_ms": 10.1,
        "request_ms": 12.5,
        "detections": [{"class_id": 0, "label": "person", "score": 0.9, "box": [1, 2, 3, 4]}],
    }
    result = decode_result(encode_result(doc))
    assert isinstance(result, FrameResult) and result.detections[0].label == "person"


def test_batch_framing_round_trip_and_errors():
    images = [b"\xff\xd8one", b"\xff\xd8two-two"]
    assert [bytes(i) for i in decode_batch(encode_batch(images), max_items=4)] == images
    with pytest.raises(ContractError, match="more than 1 items"):
        decode_batch(encode_batch(images), max_items=1)
    with pytest.raises(ContractError, match="item 1: declares"):
        decode_batch(encode_batch(images)[:-2], max_items=4)
    with pytest.raises(ContractError, match="empty"):
        decode_batch(b"", max_items=4)
    with pytest.raises(ContractError, match="item 0: empty image"):
        decode_batch(b"\x00\x00\x00\x00", max_items=4)


def test_topic_specs_carry_size_limit():
    specs = {s.name: s for s in topic_specs(partitions=3)}
    assert all(s.partitions == 3 for s in specs.values())
    assert specs["video.frames.v1"].config["max.message.bytes"] == str(MAX_MESSAGE_BYTES)
    assert specs["video.frames.dlq.v1"].config["max.message.bytes"] == str(MAX_MESSAGE_BYTES)
