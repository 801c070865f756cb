"""(a), (b) and (g) alone, for a machine without a broker (no Java), as bench/device/run.sh runs them on a
machine with more cores: `python -m bench.run --no-kafka --out FILE`. Writes FILE after every stage, so a run cut
short by its time cap still leaves its figures; never bench/results/latest.json."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import signal
import time
import traceback
from typing import Any

from bench import figures
from bench.bare import BareBackends
from bench.ceiling import service_ceiling
from bench.common import jpegs, log, video_frames, write_json
from bench.machine import accuracy_gates, affinity_check, machine, runtime_versions
from bench.service import auto_runtime, service_paired, service_sweep
from tools.harness.processes import free_port, inference_process
from tools.harness.results import percentile
from tools.paths import DEFAULT_MODEL, ROOT, SAMPLE_VIDEO


def without_kafka(args: argparse.Namespace) -> int:
    """The bare sweep, the service's sweep and back-to-back pairs, the old limit right after them, the
    service ceiling, and the service's own runtime choice. Returns 1 if a stage failed."""
    out = args.out
    report: dict = {
        "mode": "no-kafka",
        "label": args.cpus_label,
        "machine": machine(),
        "accuracy_gates": accuracy_gates(DEFAULT_MODEL),
        "runtimes": runtime_versions(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "settings": {"seconds": args.seconds, "sweep_seconds": args.sweep_seconds, "rounds": args.rounds},
    }
    cpus = report["machine"]["cpu_limit"]
    workdir = ROOT / "out" / f"bench-no-kafka-{cpus}cpu"
    for old_log in (workdir / "logs").glob("*.log"):  # this run's service logs alone
        old_log.unlink()
    log(f"{args.cpus_label or ''}: {report['machine']}, {report['runtimes']}")
    inference = None
    state: dict[str, Any] = {}

    def cut_short(signum: int, frame: Any) -> None:
        """A stage's time cap (timeout) ran out: keep what was measured, stop the service, exit now
        (unwinding could wait forever on the sweep's threads)."""
        try:
            os.kill(int((workdir / "inference.pid").read_text()), signal.SIGTERM)
            (workdir / "inference.pid").unlink()
        except (OSError, ValueError):
            pass
        report["error"] = f"cut short by signal {signum} (the stage's time cap)"
        if "bare" not in report and "bare" in state:
            report["bare_points"] = state["bare"].points
        report["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        write_json(out, report)
        log(f"{report['error']}: wrote what was measured to {out}")
        os._exit(124)

    signal.signal(signal.SIGTERM, cut_short)
    try:
        report["affinity"] = affinity_check()
        log(f"affinity check: {report['affinity']}")
        write_json(out, report)
        sd_frames = video_frames(SAMPLE_VIDEO, 64)
        log("(a) bare backends: backend x precision x instances x batch")
        bare = state["bare"] = BareBackends(DEFAULT_MODEL, sd_frames, cpus, try_bf16=args.try_bf16)
        report["bare"] = bare.sweep(args.sweep_seconds)
        write_json(out, report)
        best = report["bare"]["best"]
        runtime = figures.serving_env(best, cpus)  # as the service splits it over its processes
        port = free_port()
        inference = inference_process(port, workdir / "logs", DEFAULT_MODEL, **runtime).start()
        # The service runs in its own process group: if this process is killed, the caller stops it by this pid.
        (workdir / "inference.pid").write_text(f"{inference.process.pid}\n")
        url = f"http://127.0.0.1:{port}"
        inference.wait_ready()
        log(f"(b) inference service over HTTP ({best['name']})")
        report["service"] = service_sweep(url, jpegs(sd_frames), args.seconds, cpus)
        report["service"]["runtime"] = runtime
        write_json(out, report)
        paired = service_paired(url, jpegs(sd_frames), report["service"]["best"], bare, args.rounds, args.seconds)
        report["service"]["paired"] = paired
        ort_reference = bare.reference(args.seconds, "after the pairs", "ort_f32")
        inference.stop()
        inference = None
        (workdir / "inference.pid").unlink(missing_ok=True)
        report["bare"]["references"] = {
            "service": percentile([p["bare_fps"] for p in paired["pairs"]], 50),
            "ort_f32_after_pairs": ort_reference,
        }
        report.update(figures.without_kafka(report))
        write_json(out, report)
        if args.null_model is not None or importlib.util.find_spec("onnx") is not None:
            log("(g) the service ceiling: a model that costs nothing, the same settings")
            report["ceiling"] = service_ceiling(workdir, jpegs(sd_frames), args.seconds, cpus, runtime, args.null_model)
            report["ratios"]["ceiling_vs_best_bare"] = round(report["ceiling"]["fps"] / report["bare"]["fps"], 3)
            write_json(out, report)
        else:
            log("(g) skipped: no --null-model and no onnx package to build one")
        report["service_auto"] = auto_runtime(workdir)
    except Exception:  # keep what was measured, and say what broke
        report["error"] = traceback.format_exc()
        log(f"error: {report['error']}")
        if inference is not None:
            log(f"inference log tail:\n{inference.log_tail()}")
    finally:
        if inference is not None:
            inference.stop()
            (workdir / "inference.pid").unlink(missing_ok=True)
        report["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        write_json(out, report)
    summary = {k: report.get(k) for k in ("label", "ratios", "fps_per_vcpu", "targets_met", "service_auto")}
    print(json.dumps(summary, indent=2))
    log(f"wrote {out}")
    return 1 if "error" in report else 0
