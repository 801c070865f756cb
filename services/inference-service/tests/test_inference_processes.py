"""Serving from several processes (INFERENCE_PROCESSES): the real service and model as subprocesses, two
workers behind one port, the supervisor's probes and metrics over both; and the pure parts (how many
processes, what share of the CPUs each gets, which worker a log line came from)."""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psutil
import pytest

from inference_service import serving
from inference_service.serving import auto_processes, cpu_shares, processes_for, serving_share
from inference_service.settings import InferenceSettings
from tools.harness.processes import ServiceProcess, free_port, inference_process, ops_url
from tools.paths import SAMPLE_VIDEO
from vidpipe.contract import BATCH_CONTENT_TYPE, encode_batch
from vidpipe.logs import configure_logging

# --- the pure parts ------------------------------------------------------------------------------------


def test_auto_is_one_process_per_cpu_and_never_none():
    assert [auto_processes(c) for c in (1, 2, 3, 16)] == [1, 2, 3, 16]
    assert auto_processes(0) == 1
    settings = InferenceSettings(model_uri="m.onnx")
    assert processes_for(settings, cpus=4) == 4
    assert processes_for(InferenceSettings(model_uri="m.onnx", processes=3), cpus=16) == 3


@pytest.mark.parametrize(
    ("cpus", "processes", "shares"),
    [(2, 2, [1, 1]), (16, 16, [1] * 16), (16, 3, [6, 5, 5]), (16, 1, [16]), (2, 4, [1, 1, 1, 1])],
)
def test_each_process_gets_its_share_of_the_cpus(cpus, processes, shares):
    assert cpu_shares(cpus, processes) == shares


@pytest.mark.parametrize(
    ("available", "shares", "sets"),
    [
        ([0, 1], [1, 1], [[0], [1]]),
        ([4, 5, 6, 7], [1, 1], [[4, 5], [6, 7]]),  # a quota of 2 on a host of more: all its CPUs, split
        (list(range(16)), [6, 5, 5], [list(range(6)), list(range(6, 11)), list(range(11, 16))]),
        ([0, 1], [1, 1, 1], [[0], [1], [0]]),  # more workers than CPUs: in turn
    ],
)
def test_each_worker_runs_on_cpus_of_its_own(available, shares, sets):
    assert serving.cpu_sets(available, shares) == sets


def test_a_worker_sizes_its_model_from_its_share(monkeypatch):
    monkeypatch.delenv(serving.WORKER_CPUS, raising=False)
    monkeypatch.setattr(serving, "cpu_limit", lambda: 16)
    assert serving_share() == 16  # the only process: the pod's limit
    monkeypatch.setenv(serving.WORKER_CPUS, "5")
    monkeypatch.setenv(serving.WORKER_PROCESSES, "3")
    assert serving_share() == 5
    assert serving.runtime_fields() == {"processes": 3, "cpus_per_process": 5, "cpu_limit": 16}


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_a_workers_log_lines_say_which_worker(log_format, capsys):
    configure_logging("info", log_format)
    try:
        serving.tag_logs(2)
        logging.getLogger("inference_service.test").info("hello")
        line = capsys.readouterr().err.strip().splitlines()[-1]
    finally:
        configure_logging("info", "text")
    if log_format == "json":
        document = json.loads(line)
        assert (document["worker"], document["message"]) == (2, "hello")
    else:
        assert " worker=2 inference_service.test: hello" in line


def test_a_bad_processes_setting_exits_2_naming_it(tmp_path):
    env = inference_process(free_port(), tmp_path, INFERENCE_PROCESSES="-1").env
    done = subprocess.run([sys.executable, "-m", "inference_service"], env=env, capture_output=True, timeout=60)
    assert done.returncode == 2
    assert "INFERENCE_PROCESSES" in done.stderr.decode()


# --- the real service, two workers -------------------------------------------------------------------------


def _metrics(process: ServiceProcess) -> dict[str, float]:
    text = httpx.get(ops_url(process), timeout=10).text
    return {
        name: float(value)
        for name, value in (line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#"))
    }


def _workers(process: ServiceProcess) -> list[psutil.Process]:
    return psutil.Process(process.process.pid).children()


@pytest.fixture(scope="module")
def frames():
    from bench.common import jpegs, video_frames

    return jpegs(video_frames(SAMPLE_VIDEO, 16))


@pytest.fixture(scope="module")
def two_workers(default_model, tmp_path_factory):
    port = free_port()
    process = inference_process(port, tmp_path_factory.mktemp("logs"), default_model, INFERENCE_PROCESSES="2")
    process.start()
    ready_at = None
    deadline = time.monotonic() + 90
    while ready_at is None and time.monotonic() < deadline:
        assert process.running, process.log_tail()
        try:
            if httpx.get(process.ready_url, timeout=2).status_code == 200:
                ready_at = process.log_path.read_text()
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    assert ready_at is not None, process.log_tail()
    process.ready_log = ready_at  # the log as it stood when /readyz first answered 200
    yield process, f"http://127.0.0.1:{port}"
    process.stop()


def test_ready_once_both_workers_loaded_and_both_answer(two_workers, frames):
    process, url = two_workers
    # /readyz turned 200 only after both workers had reported their model loaded.
    assert "worker 1 has its model loaded" in process.ready_log
    assert "worker 2 has its model loaded" in process.ready_log
    runtime = httpx.get(f"{url}/v1/model", timeout=10).json()["runtime"]
    assert (runtime["processes"], runtime["cpus_per_process"]) == (2, max(1, runtime["cpu_limit"] // 2))
    before = _metrics(process)

    def send(index: int) -> int:
        # A connection per request: each is accepted by whichever worker takes it first.
        response = httpx.post(f"{url}/v1/infer", content=frames[index % len(frames)], timeout=60,
                              headers={"Content-Type": "image/jpeg"})  # fmt: skip
        assert response.status_code == 200, response.text
        return 1

    with ThreadPoolExecutor(6) as pool:
        sent = sum(pool.map(send, range(60)))
    after = _metrics(process)
    served = {w: after[f'inference_worker_frames_total{{worker="{w}"}}'] for w in ("1", "2")}
    assert after["inference_frames_total"] - before["inference_frames_total"] == sent
    assert sum(served.values()) == after["inference_frames_total"]
    assert min(served.values()) > 0, served  # both workers served
    assert after["inference_serving_processes"] == 2
    assert after["inference_model_loaded"] == 1
    assert after['inference_requests_total{endpoint="/v1/infer",status="200"}'] >= sent


def test_a_worker_that_dies_is_started_again(two_workers, frames):
    process, url = two_workers
    victim = _workers(process)[0]
    victim.kill()
    # The other worker goes on serving meanwhile.
    response = httpx.post(f"{url}/v1/infer", content=frames[0], headers={"Content-Type": "image/jpeg"}, timeout=60)
    assert response.status_code == 200
    deadline = time.monotonic() + 30
    while _metrics(process)["inference_worker_restarts_total"] == 0 and time.monotonic() < deadline:
        time.sleep(0.05)  # until the supervisor has seen it die
    process.wait_ready(timeout_s=60)
    assert victim.pid not in [w.pid for w in _workers(process)] and len(_workers(process)) == 2
    assert httpx.get(ops_url(process, "/healthz"), timeout=5).status_code == 200
    assert _metrics(process)["inference_worker_restarts_total"] == 1
    assert "died (signal SIGKILL): starting it again" in process.log_tail(200)


def test_sigterm_answers_the_requests_in_flight_and_exits_0(two_workers, frames):
    process, url = two_workers
    # 32 frames each: several model batches; both together fit one worker's 64 frames in flight.
    body = encode_batch(frames * 2)
    answers: list[httpx.Response] = []

    def send() -> None:
        answers.append(
            httpx.post(f"{url}/v1/infer/batch", content=body, headers={"Content-Type": BATCH_CONTENT_TYPE}, timeout=60)
        )

    decoded = _metrics(process).get("inference_decode_seconds_count", 0.0)
    senders = [threading.Thread(target=send) for _ in range(2)]
    for sender in senders:
        sender.start()
    deadline = time.monotonic() + 30
    while _metrics(process).get("inference_decode_seconds_count", 0.0) < decoded + 64 and time.monotonic() < deadline:
        time.sleep(0.01)  # both requests read and decoded: their frames are with the model
    process.signal(signal.SIGTERM)
    for sender in senders:
        sender.join(60)
    assert process.process.wait(60) == 0
    assert [a.status_code for a in answers] == [200, 200], [a.text[:200] for a in answers]
    assert all(len(a.json()["results"]) == 32 for a in answers)
    assert "draining 2 worker(s)" in process.log_tail(100)


def test_a_worker_that_cannot_load_its_model_fails_healthz_with_the_message(tmp_path):
    missing = tmp_path / "nowhere.onnx"
    process = inference_process(
        free_port(), tmp_path, Path(missing), INFERENCE_PROCESSES="2", INFERENCE_LOG_FORMAT="json"
    ).start()
    try:
        deadline = time.monotonic() + 60
        health = None
        while time.monotonic() < deadline:
            assert process.running, process.log_tail()
            try:
                health = httpx.get(ops_url(process, "/healthz"), timeout=2)
                if health.status_code == 503 and "worker 2" in health.text and "worker 1" in health.text:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        assert health is not None and health.status_code == 503
        message = health.json()["error"]["message"]
        assert "worker 1: model failed to load" in message and "nowhere.onnx" in message
        assert httpx.get(process.ready_url, timeout=2).status_code == 503
        lines = [json.loads(line) for line in process.log_path.read_text().splitlines() if line.startswith("{")]
        failed = [line for line in lines if "model failed to load" in line["message"]]
        # Each worker's own line says which; the supervisor's lines name the worker in the message.
        assert {line.get("worker") for line in failed if line["logger"] == "inference_service.app"} == {1, 2}
        assert {line.get("worker") for line in failed if line["logger"] == "inference_service.serving"} == {None}
    finally:
        assert process.stop() == 0


@pytest.mark.parametrize(("max_age", "closes"), [(None, False), (0.0, True)])
def test_a_connection_past_its_age_closes_after_its_next_response(max_age, closes):
    """Workers close old connections so that clients reconnect and the accept queue spreads them again."""
    import uvicorn

    from vidpipe.http_edge import EdgeConfig, EdgeLimits

    async def app(scope, receive, send):
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
            await send({"type": "http.response.body", "body": b"ok"})

    port = free_port()
    limits = EdgeLimits(connection_max_age_s=max_age)
    server = uvicorn.Server(EdgeConfig(app, limits, host="127.0.0.1", port=port, log_level="error", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.01)
        with httpx.Client() as client:
            answers = [client.get(f"http://127.0.0.1:{port}/") for _ in range(2)]
        assert [a.text for a in answers] == ["ok", "ok"]
        assert all((a.headers.get("connection") == "close") == closes for a in answers)
    finally:
        server.should_exit = True
        thread.join(10)


def test_the_bench_runs_the_best_configuration_over_the_serving_processes():
    from bench.figures import one_process_env, serving_env, split_env

    openvino = {"backend": "openvino", "precision": "bf16", "instances": 2, "threads_per_instance": 1}
    env = serving_env(openvino, cpus=2)
    assert (env["INFERENCE_PROCESSES"], env["INFERENCE_INSTANCES"], env["INFERENCE_INTRA_OP_THREADS"]) == (
        "2",
        "1",
        "1",
    )
    assert one_process_env(env)["INFERENCE_INSTANCES"] == "2" and one_process_env(env)["INFERENCE_PROCESSES"] == "1"
    assert split_env(one_process_env(env), cpus=2) == env
    big = serving_env({**openvino, "backend": "onnxruntime", "instances": 8, "threads_per_instance": 2}, cpus=16)
    assert (big["INFERENCE_PROCESSES"], big["INFERENCE_INSTANCES"], big["INFERENCE_INTRA_OP_THREADS"]) == (
        "8",
        "1",
        "2",
    )
    # One instance of two threads cannot be split: the bench runs it in one process, and the ceiling's
    # processes size their own.
    ort = serving_env({**openvino, "backend": "onnxruntime", "instances": 1, "threads_per_instance": 2}, cpus=2)
    assert ort["INFERENCE_PROCESSES"] == "1"
    split = split_env(ort, cpus=2)
    assert split["INFERENCE_PROCESSES"] == "2" and "INFERENCE_INSTANCES" not in split


def test_the_bench_reports_the_ceiling_with_one_process_and_with_all():
    from bench.figures import PROCESSES_TARGET
    from bench.report import _ceiling_rows

    ceiling = {
        "fps": 1447.0,
        "best": {"endpoint": "/v1/infer/batch", "concurrency": 2},
        "processes": 2,
        "one_process": {"fps": 996.0, "best": {"endpoint": "/v1/infer/batch", "concurrency": 3}},
        "all_vs_one_process": 1.453,
    }
    run = {
        "ceiling": ceiling,
        "ratios": {"ceiling_vs_best_bare": 24.0},
        "targets": {"ceiling_all_vs_one_process": PROCESSES_TARGET},
        "targets_met": {"ceiling_all_vs_one_process": False},
    }
    (_, figure, target) = _ceiling_rows(run)[1]
    assert figure == (
        "1 process: 996.0 frames/s (/v1/infer/batch, 3 clients); "
        "2 processes: 1447.0 frames/s (/v1/infer/batch, 2 clients): 1.453x"
    )
    assert target == ">= 1.6: **not met**"
    assert len(_ceiling_rows({**run, "ceiling": {k: ceiling[k] for k in ("fps", "best")}})) == 1  # older runs
