"""The figures a run derives from what it measured: the service settings of the bare winner, the ratios to
both limits, throughput per vCPU (so machines of different sizes compare), and which targets were met.
Pure functions of the report, so the keys other code reads (`fps_per_vcpu.cpus`, `ratios.*`) are tested
without a run."""

from __future__ import annotations

import math

from inference_service.serving import auto_processes
from tools.harness.results import percentile

# A full run's targets: the service and the pipeline near the limit, the pipeline well past the old limit
# (onnxruntime f32, one instance) and the naive design.
TARGETS = {"service_vs_best_bare": 0.90, "e2e_vs_best_bare": 0.85, "e2e_vs_ort_f32_bare": 2.5, "e2e_vs_naive": 1.5}
# (g) with all the serving processes against one, where the run measured both.
PROCESSES_TARGET = 1.6


def runtime_env(best: dict) -> dict[str, str]:
    """The service's settings that run (a)'s best configuration."""
    return {
        "INFERENCE_BACKEND": best["backend"],
        "INFERENCE_PRECISION": best["precision"],
        "INFERENCE_INSTANCES": str(best["instances"]),
        "INFERENCE_INTRA_OP_THREADS": str(best["threads_per_instance"]),
    }


def serving_env(best: dict, cpus: int) -> dict[str, str]:
    """(a)'s best configuration as the service runs it by default: split over the serving processes it starts
    by itself (one per CPU: serving.auto_processes), or over as many of them as its instances divide among
    (2 x 1 on 2 CPUs: two processes of 1 x 1; 8 x 2 on 16: eight of 1 x 2; 1 x 2: one process)."""
    processes = math.gcd(best["instances"], auto_processes(cpus))
    return {
        **runtime_env(best),
        "INFERENCE_INSTANCES": str(best["instances"] // processes),
        "INFERENCE_PROCESSES": str(processes),
    }


def one_process_env(env: dict[str, str]) -> dict[str, str]:
    """Settings of one or several serving processes as one process running all their instances."""
    processes = int(env.get("INFERENCE_PROCESSES", "1"))
    single = {**env, "INFERENCE_PROCESSES": "1"}
    if "INFERENCE_INSTANCES" in env:
        single["INFERENCE_INSTANCES"] = str(int(env["INFERENCE_INSTANCES"]) * processes)
    return single


def split_env(env: dict[str, str], cpus: int) -> dict[str, str]:
    """One process's settings over all the serving processes the service starts by itself on `cpus`: each
    runs its part of the instances where they divide among the processes, else sizes its own from its share
    of the CPUs (INFERENCE_INSTANCES and INFERENCE_INTRA_OP_THREADS left unset)."""
    processes = auto_processes(cpus)
    split = {**env, "INFERENCE_PROCESSES": str(processes)}
    instances = int(env.get("INFERENCE_INSTANCES", "0"))
    if processes > 1 and instances and instances % processes == 0:
        split["INFERENCE_INSTANCES"] = str(instances // processes)
    elif processes > 1:
        split.pop("INFERENCE_INSTANCES", None)
        split.pop("INFERENCE_INTRA_OP_THREADS", None)
    return split


def full_run(report: dict) -> dict:
    """ratios, fps_per_vcpu, targets and targets_met of a run with Kafka, (a) to (g) measured."""
    cpus = report["machine"]["cpu_limit"]
    bare, references = report["bare"], report["bare"]["references"]
    service, ceiling = report["service"]["fps"], report["ceiling"]["fps"]
    e2e = report["end_to_end"]["fps"]
    ratios = {
        "service_vs_best_bare": report["service"]["paired"]["ratio"],
        "e2e_vs_best_bare": round(e2e / references["end_to_end"], 3),
        "e2e_vs_ort_f32_bare": round(e2e / references["end_to_end_ort_f32"], 3),
        "e2e_vs_naive": round(e2e / report["naive"]["fps"], 3),
        # Against the sweep's figures instead of the adjacent references (sensitive to drift):
        "service_vs_best_bare_sweep": round(service / bare["fps"], 3),
        "e2e_vs_best_bare_sweep": round(e2e / bare["fps"], 3),
        "e2e_vs_ort_f32_bare_sweep": round(e2e / bare["ort_f32"]["fps"], 3),
        "ceiling_vs_best_bare": round(ceiling / bare["fps"], 3),
    }
    per_vcpu = {
        "cpus": cpus,
        "bare_best": round(bare["fps"] / cpus, 2),
        "bare_ort_f32": round(bare["ort_f32"]["fps"] / cpus, 2),
        "service": round(service / cpus, 2),
        "end_to_end": round(e2e / cpus, 2),
        "service_ceiling": round(ceiling / cpus, 2),
    }
    targets = dict(TARGETS)
    if "one_process" in report["ceiling"]:
        ratios["ceiling_all_vs_one_process"] = report["ceiling"]["all_vs_one_process"]
        targets["ceiling_all_vs_one_process"] = PROCESSES_TARGET
    met = {k: ratios[k] >= v for k, v in targets.items()}
    met["transport_fps_1000"] = report["transport"]["fps"] >= 1000
    overload = report["overload"]
    met["rss_flat_after_10s"] = all(m["growth_after_10s_mb"] <= 10 for m in overload["memory"].values())
    met["overload_p99_within_max_age"] = overload["latency_ms"]["p99"] <= overload["max_frame_age_ms"]
    return {"ratios": ratios, "fps_per_vcpu": per_vcpu, "targets": targets, "targets_met": met}


def without_kafka(report: dict) -> dict:
    """ratios, fps_per_vcpu, targets and targets_met of a run without a broker, (a) and (b) measured: the
    service against the best bare configuration from back-to-back pairs, against the old limit re-measured
    right after them."""
    cpus = report["machine"]["cpu_limit"]
    bare, service = report["bare"], report["service"]
    paired = service["paired"]
    service_fps = percentile([p["service_fps"] for p in paired["pairs"]], 50)
    bare_fps, ort_fps = bare["fps"], bare["ort_f32"]["fps"]
    ratios = {
        "service_vs_best_bare": paired["ratio"],
        "service_vs_ort_f32_bare": round(service_fps / bare["references"]["ort_f32_after_pairs"], 3),
        "best_bare_vs_ort_f32_bare": round(bare_fps / ort_fps, 3),
        "service_vs_best_bare_sweep": round(service["fps"] / bare_fps, 3),
        "service_vs_ort_f32_bare_sweep": round(service["fps"] / ort_fps, 3),
    }
    per_vcpu = {
        "cpus": cpus,
        "bare_best": round(bare_fps / cpus, 2),
        "bare_ort_f32": round(ort_fps / cpus, 2),
        "service": round(service["fps"] / cpus, 2),
    }
    # The targets: >= 0.90 on a 2-vCPU machine, >= 0.85 on a bigger one (16 vCPUs).
    targets = {"service_vs_best_bare": 0.90 if cpus <= 2 else 0.85}
    return {
        "ratios": ratios,
        "fps_per_vcpu": per_vcpu,
        "targets": targets,
        "targets_met": {k: ratios[k] >= v for k, v in targets.items()},
    }
