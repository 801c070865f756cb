"""`make bench`: one run on this machine, every figure side by side.

One module per figure:

(a) bench.bare: the bare backends on the default model, no I/O: onnxruntime f32 and OpenVINO f32 (and bf16
    where the CPU computes it natively), each with one instance and with instances x threads splitting the
    CPUs, at batch sizes 1..16. The best configuration is the limit; onnxruntime f32 with one instance, the
    limit before the OpenVINO backend, is reported beside it;
(b) bench.service: the inference service over HTTP across client concurrency, running the best
    configuration (over its serving processes where the configuration's instances divide among them);
(c) bench.transport: Kafka transport alone: 1280x720 JPEG frames producer -> broker -> consumer, no
    inference;
(d) bench.end_to_end: the end-to-end pipeline at saturation and at 70% of it (throughput,
    capture-to-result latency);
(e) bench.naive_baseline: the naive design (bench.naive): one JSON/base64 request per frame, a consumer
    that waits for each answer;
(f) bench.overload: memory: peak RSS of each process while the publisher runs at 3x the pipeline's capacity;
(g) bench.ceiling: the service ceiling, measured right after (b): (b) again with a model that costs nothing
    (bench.null_model) on the same settings, what the service's own work (HTTP, decode, resize, batching,
    NMS, JSON) allows here, with one serving process and with all the processes the service starts;
(h) bench.publisher_group: one publisher process in the publisher group carrying 8 streams of 640x360 at
    5 frames/s: frames delivered and CPU per stream;
and bench.cost: the inference cost per camera-hour at 5 frames/s on the node type this machine's CPU class
is priced as, from (b)'s figure per vCPU.

This module only runs them in order and writes bench/results/latest.json and bench/results/latest.png (the
derived ratios and targets: bench.figures), then docs/PERFORMANCE.md's table (bench.report). With
--no-kafka, (a), (b) and (g) alone for a machine without a broker (bench.no_kafka; bench/device runs it on a
machine with more cores), into --out.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from contextlib import ExitStack
from pathlib import Path

from bench import figures
from bench.bare import BareBackends
from bench.ceiling import service_ceiling
from bench.chart import chart
from bench.common import HD_VIDEO, RESULTS, jpegs, log, video_frames
from bench.cost import inference_cost
from bench.end_to_end import end_to_end_capacity, end_to_end_live
from bench.machine import accuracy_gates, machine
from bench.naive_baseline import naive
from bench.no_kafka import without_kafka
from bench.overload import overload
from bench.publisher_group import publisher_group
from bench.service import service_paired, service_sweep
from bench.transport import transport
from tools.harness.processes import free_port, inference_process
from tools.harness.results import percentile
from tools.paths import DEFAULT_MODEL, ROOT, SAMPLE_VIDEO


def arguments() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=6.0, help="per throughput measurement")
    parser.add_argument("--sweep-seconds", type=float, default=2.5, help="per point of the bare backend sweep")
    parser.add_argument("--overload-seconds", type=float, default=60.0)
    parser.add_argument("--max-frame-age-ms", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3, help="back-to-back pairs for service_vs_best_bare")
    parser.add_argument("--transport-only", action="store_true", help="only (c), printed, no report written")
    parser.add_argument(
        "--no-kafka",
        action="store_true",
        help="only (a), (b) and (g), for a machine without a broker; writes --out, never latest.json",
    )
    parser.add_argument("--out", type=Path, help="with --no-kafka: the report's path")
    parser.add_argument("--cpus-label", default="", help="with --no-kafka: what the report calls this machine/run")
    parser.add_argument(
        "--try-bf16",
        action="store_true",
        help="with --no-kafka: sweep OpenVINO bf16 even where /proc/cpuinfo lists no bf16 flags (a sandbox's may not)",
    )
    parser.add_argument(
        "--null-model",
        type=Path,
        help="(g)'s model, already built by bench.null_model (a machine without onnx); default: build it now",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = arguments()
    args = parser.parse_args(argv)
    if args.no_kafka:
        if args.out is None:
            parser.error("--no-kafka needs --out")
        for path in (DEFAULT_MODEL, SAMPLE_VIDEO):
            if not path.exists():
                print(f"error: {path} is missing", file=sys.stderr)
                return 1
        return without_kafka(args)
    for path in (DEFAULT_MODEL, SAMPLE_VIDEO, HD_VIDEO):
        if not path.exists():
            print(f"error: {path} is missing: run `make setup`", file=sys.stderr)
            return 1
    RESULTS.mkdir(parents=True, exist_ok=True)
    workdir = ROOT / "out" / "bench"
    if args.transport_only:
        from tools.kafka.broker import LocalBroker

        with LocalBroker(workdir / "kafka-transport", port=0, controller_port=0, die_with_parent=True) as broker:
            print(json.dumps(transport(os.environ.get("KAFKA_BOOTSTRAP") or broker.bootstrap, 5000)))
        return 0
    return with_kafka(args, workdir)


def with_kafka(args: argparse.Namespace, workdir: Path) -> int:
    """(a) to (g) in order, against a local broker (or KAFKA_BOOTSTRAP's); then latest.json, the chart and
    docs/PERFORMANCE.md's table."""
    sd_frames = video_frames(SAMPLE_VIDEO, 64)
    report: dict = {
        "machine": machine(),
        "accuracy_gates": accuracy_gates(DEFAULT_MODEL),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    cpus = report["machine"]["cpu_limit"]

    log("(a) bare backends: backend x precision x instances x batch")
    bare = BareBackends(DEFAULT_MODEL, sd_frames, cpus)
    report["bare"] = bare.sweep(args.sweep_seconds)
    best = report["bare"]["best"]
    with ExitStack() as stack:
        from tools.kafka.broker import LocalBroker

        bootstrap = os.environ.get("KAFKA_BOOTSTRAP")
        if not bootstrap:
            broker = LocalBroker(workdir / "kafka-data", port=0, controller_port=0, die_with_parent=True)
            if broker.is_running():
                broker.stop()
            broker.start()
            stack.callback(broker.stop)
            bootstrap = broker.bootstrap
        port = free_port()
        # The service runs the configuration that won the bare sweep, over its own serving processes.
        runtime = figures.serving_env(best, cpus)
        inference = inference_process(port, workdir / "logs", DEFAULT_MODEL, **runtime).start()
        stack.callback(inference.stop)
        url = f"http://127.0.0.1:{port}"
        inference.wait_ready()

        log(f"(b) inference service over HTTP ({best['name']})")
        report["service"] = service_sweep(url, jpegs(sd_frames), args.seconds, cpus)
        report["service"]["runtime"] = runtime
        report["service"]["paired"] = service_paired(
            url, jpegs(sd_frames), report["service"]["best"], bare, args.rounds, args.seconds
        )
        references = {"service": percentile([p["bare_fps"] for p in report["service"]["paired"]["pairs"]], 50)}
        # Right after (b), in the same conditions (the real service idle, the broker idle).
        log("(g) the service ceiling: a model that costs nothing, (b)'s settings")
        report["ceiling"] = service_ceiling(workdir, jpegs(sd_frames), args.seconds, cpus, runtime, args.null_model)
        log("(c) Kafka transport, 1280x720 JPEG")
        report["transport"] = transport(bootstrap, 5000)
        log("(d) end-to-end capacity, then (e) the naive baseline, with both bare limits before and after")
        before = bare.reference(args.seconds, "before (d)")
        ort_before = bare.reference(args.seconds, "before (d)", "ort_f32")
        capacity = end_to_end_capacity(bootstrap, url, workdir)
        after = bare.reference(args.seconds, "between (d) and (e)")
        ort_after = bare.reference(args.seconds, "between (d) and (e)", "ort_f32")
        report["naive"] = naive(bootstrap, DEFAULT_MODEL, workdir, 300)
        references["end_to_end"] = round((before + after) / 2, 2)
        references["end_to_end_ort_f32"] = round((ort_before + ort_after) / 2, 2)
        report["bare"]["end_to_end_before_after"] = {"best": [before, after], "ort_f32": [ort_before, ort_after]}
        log("(d) end-to-end live: saturation and 70%")
        report["end_to_end"] = {
            "capacity": capacity,
            "fps": capacity["fps"],
            **end_to_end_live(bootstrap, url, workdir, args.seconds * 3, capacity["fps"]),
        }
        report["bare"]["references"] = references
        log("(f) memory at 3x capacity")
        report["overload"] = overload(
            bootstrap,
            inference,
            url,
            workdir,
            report["end_to_end"]["fps"],
            args.overload_seconds,
            args.max_frame_age_ms,
        )
        log("(h) streams per publisher process: 8 streams of 640x360 at 5 frames/s in the publisher group")
        report["publisher_group"] = publisher_group(bootstrap, streams=8, seconds=args.seconds * 3, fps=5.0)

    report.update(figures.full_run(report))
    report["inference_cost"] = inference_cost(report)
    (RESULTS / "latest.json").write_text(json.dumps(report, indent=2) + "\n")
    chart(report, RESULTS / "latest.png")
    print(
        json.dumps(
            {"ratios": report["ratios"], "fps_per_vcpu": report["fps_per_vcpu"], "targets_met": report["targets_met"]},
            indent=2,
        )
    )
    log(f"wrote {RESULTS / 'latest.json'} and {RESULTS / 'latest.png'}")
    from bench.report import main as update_performance_doc

    return update_performance_doc([])


if __name__ == "__main__":
    sys.exit(main())
