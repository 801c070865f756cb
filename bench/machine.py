"""What a run measured on: the machine (CPU, bf16, cgroup limit), the runtimes' versions, whether CPU affinity
is enforced here, and the accuracy gates' verdicts beside the model."""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

GATE_FIELDS = ("precision", "f1", "min_f1", "passed", "kept", "reference_detections", "added", "score_diff_mean")
GATE_FIELDS += ("score_diff_max", "frames", "video", "backend", "cpu", "created")


def accuracy_gates(model: Path) -> dict:
    """The accuracy gates' verdicts beside the model (make model: bf16 where the CPU computes it; make int8),
    as the service judges them: the figures, or why there are none."""
    from inference_service.accuracy_gate import gate_uri, read_verdict
    from vidpipe.storage import sha256_file

    digest, gates = sha256_file(model), {}
    for precision in ("bf16", "int8"):
        verdict = read_verdict(str(model), digest, str(model.parent), precision)
        report = verdict.report or {}
        gates[precision] = {key: report[key] for key in GATE_FIELDS if key in report} | {
            "allowed": verdict.allowed,
            "reason": verdict.reason.replace(f"{model.parent}/", ""),  # no machine's paths in the figures
            "file": Path(gate_uri(str(model), precision)).name,
        }
    return gates


def machine() -> dict:
    from inference_service.cpu import bf16_flags, cpu_flags, cpu_limit

    model = ""
    try:
        model = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        pass
    flags = cpu_flags()
    return {
        "cpus": os.cpu_count(),
        "cpu_limit": cpu_limit(),
        "cpu_model": model or platform.processor(),
        "avx512": any(f.startswith("avx512") for f in flags),
        "bf16": ", ".join(bf16_flags()) or "none",
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def runtime_versions() -> dict:
    import importlib.metadata

    versions = {}
    for dist in ("onnxruntime", "openvino", "numpy", "opencv-python-headless", "fastapi", "pydantic", "uvicorn"):
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[dist] = None
    try:  # what OpenVINO itself finds on this CPU (BF16 among them where it computes bf16)
        import openvino as ov  # type: ignore[import-untyped]

        versions["openvino_cpu_capabilities"] = list(ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    except Exception as exc:
        versions["openvino_cpu_capabilities"] = f"unavailable: {exc}"
    return versions


def affinity_check(seconds: float = 1.0) -> dict:
    """Whether this process's CPU affinity (taskset) bounds the CPU it gets: some sandboxes (gVisor)
    report the mask but may schedule past it. Runs twice as many busy processes as allowed CPUs for
    `seconds` and measures the CPU seconds they got per second: about the allowed count if enforced."""
    import resource
    import subprocess

    allowed = len(os.sched_getaffinity(0))
    code = f"import time\nt = time.perf_counter() + {seconds}\nwhile time.perf_counter() < t:\n    pass\n"
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    processes = [subprocess.Popen([sys.executable, "-I", "-c", code]) for _ in range(2 * allowed)]
    for process in processes:
        process.wait()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    used = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    per_second = used / seconds
    return {
        "allowed_cpus": allowed,
        "busy_processes": len(processes),
        "cpu_seconds_per_second": round(per_second, 2),
        "enforced": per_second <= allowed * 1.3,
    }
