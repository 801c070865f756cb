"""Hostile records through the real pipeline (broker, consumer process, inference process): each costs
one dead letter with its reason, the frames after it on the same partition are processed, streams on
other partitions never wait on it, no service restarts and inference's memory stays under its limit."""

from __future__ import annotations

import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from confluent_kafka import Producer

from tests import jpeg_craft
from tests.faults.harness import Account, record_row
from tests.fixtures.pipeline import topic_env
from tests.helpers import peak_rss_mb, read_all, results_by_seq, video_jpegs
from tools.harness.processes import consumer_health_url, consumer_process, free_port, inference_process
from vidpipe.contract import BATCH_CONTENT_TYPE, FrameMeta, Header, decode_batch, header_dict
from vidpipe.kafka import producer_config

pytestmark = [pytest.mark.broker, pytest.mark.model, pytest.mark.faults]

POD_MEMORY_LIMIT = 2 * 1024**3  # the inference Deployment's limit (cdk8s_app)
FAIL_MARKER = b"VIDPIPE-FAULT: fail inference"


def declaring(jpeg: bytes, width: int, height: int) -> bytes:
    sof = jpeg.index(b"\xff\xc0")
    return jpeg[: sof + 5] + height.to_bytes(2, "big") + width.to_bytes(2, "big") + jpeg[sof + 9 :]


def with_comment(jpeg: bytes, text: bytes) -> bytes:
    """The same image with a JPEG comment segment: still a valid JPEG to every check."""
    return jpeg[:2] + b"\xff\xfe" + (len(text) + 2).to_bytes(2, "big") + text + jpeg[2:]


def frame_headers(width: int, height: int, /, **replace: bytes) -> list[tuple[str, bytes]]:
    """A hostile record's headers: valid ones for stream "hostile", with `replace`d values (by name, '_' for '-')."""
    headers = FrameMeta("hostile", 0, time.time_ns() // 1000, width, height).headers()
    return [(k, replace.get(k.replace("-", "_"), v)) for k, v in headers]


def hostile_cases(good: bytes, png: bytes) -> list[tuple[str, str, str, bytes, list]]:
    """(case, code, what it is, value, headers): the records a hostile or broken producer can write."""
    w, h = 640, 272
    return [
        (
            "dimension bomb 12000x12000",
            "too_large",
            "JPEG header declares 12000x12000",
            declaring(good, 12000, 12000),
            frame_headers(12000, 12000),
        ),
        (
            "dimension bomb 20000x20000",
            "too_large",
            "JPEG header declares 20000x20000",
            declaring(good, 20000, 20000),
            frame_headers(20000, 20000),
        ),
        (
            "dimension bomb 40000x40000",
            "too_large",
            "JPEG header declares 40000x40000",
            declaring(good, 40000, 40000),
            frame_headers(40000, 40000),
        ),
        (
            "far-future timestamp",
            "invalid_timestamp",
            "capture-ts-us 2.5e17",
            good,
            frame_headers(w, h, capture_ts_us=b"250000000000000000"),
        ),
        ("negative timestamp", "invalid_header", "capture-ts-us -5", good, frame_headers(w, h, capture_ts_us=b"-5")),
        ("seq out of range", "invalid_header", "seq 2^64", good, frame_headers(w, h, seq=b"18446744073709551616")),
        (
            "capture-ts-us out of range",
            "invalid_header",
            "capture-ts-us 10^30",
            good,
            frame_headers(w, h, capture_ts_us=b"1" + b"0" * 30),
        ),
        ("width out of range", "invalid_header", "width 99999999999", good, frame_headers(w, h, width=b"99999999999")),
        ("height out of range", "invalid_header", "height -272", good, frame_headers(w, h, height=b"-272")),
        (
            "non-ASCII header",
            "invalid_header",
            "stream-id in UTF-8",
            good,
            frame_headers(w, h, stream_id="caméra".encode()),
        ),
        (
            "oversized header",
            "invalid_header",
            "a 64 KB header",
            good,
            frame_headers(w, h) + [("x-junk", b"j" * 65536)],
        ),
        (
            "invalid stream id cam/1",
            "invalid_stream_id",
            "stream-id with a slash",
            good,
            frame_headers(w, h, stream_id=b"cam/1"),
        ),
        ("invalid stream id ..", "invalid_stream_id", "stream-id '..'", good, frame_headers(w, h, stream_id=b"..")),
        ("corrupt PNG", "not_a_jpeg", "a PNG with its IHDR cut", png[:20] + b"\x00" * 40, frame_headers(w, h)),
        (
            "JPEG with trailing garbage",
            "not_a_jpeg",
            "200 bytes after the end-of-image marker",
            good + b"\x00garbage" * 25,
            frame_headers(w, h),
        ),
        (
            "inference fails every time",
            "inference_failed",
            "inference answers 500 whenever this frame is in a batch",
            with_comment(good, FAIL_MARKER),
            frame_headers(w, h),
        ),
    ]


class FailingProxy:
    """In front of the real inference service: 500 for any batch holding a marked frame (a model that
    crashes on one input), everything else forwarded."""

    def __init__(self, upstream: str):
        self.requests = 0
        self.failed = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                proxy.requests += 1
                if any(FAIL_MARKER in bytes(item) for item in decode_batch(body, 10_000)):
                    proxy.failed += 1
                    self._reply(500, b'{"error": {"code": "internal", "message": "model run crashed"}}')
                    return
                answer = httpx.post(
                    upstream + self.path, content=body, headers={"Content-Type": BATCH_CONTENT_TYPE}, timeout=60
                )
                self._reply(answer.status_code, answer.content)

            def _reply(self, status: int, body: bytes):
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()


def test_each_hostile_record_costs_one_dead_letter_and_nothing_waits(
    kafka_bootstrap, kafka_settings, topics, default_model, sample_video, tmp_path
):
    import cv2

    good_frames = video_jpegs(sample_video, 40)
    png = cv2.imencode(".png", cv2.imdecode(__import__("numpy").frombuffer(good_frames[0], "uint8"), 1))[1].tobytes()
    cases = hostile_cases(good_frames[0], png)

    port = free_port()
    inference = inference_process(port, tmp_path, default_model).start()
    proxy = None
    consumer = None
    try:
        inference.wait_ready(timeout_s=120)
        inference_pid = inference.process.pid
        proxy = FailingProxy(f"http://127.0.0.1:{port}")

        # Partition 0: good frames of stream "hostile" with every hostile record between them.
        # Partitions 1 and 2: stream "neighbour", written after all of that.
        producer = Producer(producer_config(kafka_settings))
        seq = 0
        for case, _code, _what, value, headers in cases:
            for _ in range(2):
                meta = FrameMeta("hostile", seq, time.time_ns() // 1000, 640, 272)
                producer.produce(
                    topics.frames, partition=0, key=meta.key, value=good_frames[seq % 40], headers=meta.headers()
                )
                seq += 1
            producer.produce(
                topics.frames, partition=0, key=b"hostile", value=value, headers=headers + [("x-case", case.encode())]
            )
        hostile_good = seq
        for n in range(20):
            meta = FrameMeta("neighbour", n, time.time_ns() // 1000, 640, 272)
            producer.produce(
                topics.frames, partition=1 + n % 2, key=meta.key, value=good_frames[n], headers=meta.headers()
            )
        assert producer.flush(30) == 0

        consumer = consumer_process(
            kafka_bootstrap,
            proxy.url,
            str(tmp_path / "archive"),
            tmp_path,
            CONSUMER_GROUP_ID=f"hostile-{uuid.uuid4().hex[:6]}",
            CONSUMER_RETRY_INITIAL_S="0.1",
            **topic_env(topics),
        ).start()
        consumer.wait_http(consumer_health_url(consumer), timeout_s=60)
        consumer_pid = consumer.process.pid
        dead = read_all(kafka_settings, topics.dead_letter, expect=len(cases), timeout_s=120)
        results = read_all(kafka_settings, topics.results, expect=hostile_good + 20, timeout_s=120)
        assert consumer.running and consumer.process.pid == consumer_pid, consumer.log_tail()
        assert inference.running and inference.process.pid == inference_pid, inference.log_tail()
        inference_peak = peak_rss_mb(inference_pid) * 2**20
    finally:
        for process in (consumer, inference):
            if process is not None:
                process.stop()
        if proxy is not None:
            proxy.close()

    found = results_by_seq(results)
    assert set(found) == {("hostile", s) for s in range(hostile_good)} | {("neighbour", s) for s in range(20)}
    assert all(len(docs) == 1 for docs in found.values())
    by_case = {header_dict(r.headers()).get("x-case"): header_dict(r.headers()) for r in dead}
    assert len(dead) == len(cases), sorted(by_case)
    assert inference_peak < POD_MEMORY_LIMIT
    for case, code, what, _value, _headers in cases:
        headers = by_case[case]
        assert headers[Header.ERROR_CODE] == code, (case, headers[Header.ERROR_REASON])
        assert headers[Header.SOURCE_PARTITION] == "0" and headers[Header.ERROR_REASON]
        stage = headers[Header.ERROR_STAGE]
        attempts = int(headers[Header.ERROR_ATTEMPTS])
        behaviour = (
            f"{what}: dead letter `{code}` at {stage}"
            + (f" after {attempts} requests" if attempts > 1 else "")
            + "; the frames after it and the other partitions' stream processed, no restart"
        )
        record_row(
            f"hostile: {case}",
            behaviour,
            Account(published=hostile_good + 20, with_results=len(found), duplicates=0, missing=[]),
            dead_lettered=1,
        )
    (tmp_path / "inference_peak_rss.json").write_text(json.dumps({"bytes": inference_peak}))


def test_scan_bombs_are_dead_lettered_and_the_other_stream_keeps_flowing(
    kafka_bootstrap, kafka_settings, topics, default_model, sample_video, tmp_path
):
    """Two scan bombs (valid 4096x2160 progressive JPEGs of 20,000 tiny scans, 590 KB: about 20 s of CPU each
    to decode here) among stream "cam-a"'s frames, stream "cam-b" beside it: both bombs dead-lettered
    at triage with their reason, every other frame of both streams answered, no restart, inference's memory
    under its pod limit."""
    bomb = jpeg_craft.with_scans(jpeg_craft.progressive_jpeg(4096, 2160), 20_000)
    good_frames = video_jpegs(sample_video, 40)
    port, ops_port = free_port(), free_port()
    inference = inference_process(port, tmp_path, default_model, INFERENCE_OPS_PORT=str(ops_port)).start()
    consumer = None
    try:
        inference.wait_http(f"http://127.0.0.1:{ops_port}/readyz", timeout_s=120)
        inference_pid = inference.process.pid
        producer = Producer(producer_config(kafka_settings))
        bombs_at = {5, 12}  # cam-a's seqs that are bombs
        for seq in range(20):
            if seq in bombs_at:
                meta = FrameMeta("cam-a", seq, time.time_ns() // 1000, 4096, 2160)
                value = bomb
            else:
                meta = FrameMeta("cam-a", seq, time.time_ns() // 1000, 640, 272)
                value = good_frames[seq]
            producer.produce(topics.frames, partition=0, key=meta.key, value=value, headers=meta.headers())
            neighbour = FrameMeta("cam-b", seq, time.time_ns() // 1000, 640, 272)
            producer.produce(
                topics.frames,
                partition=1 + seq % 2,
                key=neighbour.key,
                value=good_frames[20 + seq],
                headers=neighbour.headers(),
            )
        assert producer.flush(30) == 0

        consumer = consumer_process(
            kafka_bootstrap,
            f"http://127.0.0.1:{port}",
            str(tmp_path / "archive"),
            tmp_path,
            CONSUMER_GROUP_ID=f"scans-{uuid.uuid4().hex[:6]}",
            **topic_env(topics),
        ).start()
        consumer.wait_http(consumer_health_url(consumer), timeout_s=60)
        consumer_pid = consumer.process.pid
        dead = read_all(kafka_settings, topics.dead_letter, expect=2, timeout_s=120)
        results = read_all(kafka_settings, topics.results, expect=38, timeout_s=120)
        assert consumer.running and consumer.process.pid == consumer_pid, consumer.log_tail()
        assert inference.running and inference.process.pid == inference_pid, inference.log_tail()
        inference_peak = peak_rss_mb(inference_pid) * 2**20
    finally:
        for process in (consumer, inference):
            if process is not None:
                process.stop()

    found = results_by_seq(results)
    expected = {("cam-a", s) for s in range(20) if s not in bombs_at} | {("cam-b", s) for s in range(20)}
    assert set(found) == expected and all(len(docs) == 1 for docs in found.values())
    assert len(dead) == 2
    for record in dead:
        headers = header_dict(record.headers())
        assert headers[Header.ERROR_CODE] == "too_many_scans", headers[Header.ERROR_REASON]
        assert headers[Header.ERROR_STAGE] == "validate" and "more than 32 scans" in headers[Header.ERROR_REASON]
        assert record.value() == bomb  # the original value, as CONSUMER_DEAD_LETTER_PAYLOAD=full (default) keeps it
    assert {int(header_dict(r.headers())[Header.SEQ]) for r in dead} == bombs_at
    assert inference_peak < POD_MEMORY_LIMIT
    record_row(
        "hostile: scan bomb",
        f"2 valid 4096x2160 progressive JPEGs of 20,000 scans ({len(bomb) // 1024} KB each) among one stream's "
        "frames, a second stream beside it: both dead-lettered `too_many_scans` at validate, before any decoding; "
        f"every other frame of both streams processed, no restart, inference peak RSS {inference_peak / 2**20:.0f} MB",
        Account(published=38, with_results=len(found), duplicates=0, missing=[]),
        dead_lettered=2,
    )
