"""Where the autoscaling thresholds and the inference pod's CPU come from: one place, committed.

KEDA's lagThreshold per Deployment is `throughput per replica x latency budget` (docs/KEDA_KAFKA_LAG.md).
The throughput defaults are `DOCUMENTED`, the figures of the `make bench` run docs/PERFORMANCE.md reports:
a synth is a function of the commit and its configuration alone, never of files a machine happens to hold.

A deployment on other hardware sets its own figures (settings.yaml `scaling:` and `resources:`, or the
CDK context): `python -m vidpipe_deploy.sizing bench/results/latest.json` turns a bench run into them,
scaled to the inference pod's CPUs when the bench machine had more (`fps_per_vcpu.cpus`, the bench's
cgroup CPU limit, else `machine.cpus`; a linear approximation), with the instances and threads per
instance of the bench's best configuration (`bare.best`) fitted to the pod.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

from consumer_service.settings import ConsumerSettings

# The inference pod: intra-op threads = CPU limit = the cores the bench measures one replica on.
# 1.5 CPUs requested so one pod fits a 2-vCPU share of a 4-vCPU node (c6i.xlarge) next to the daemonsets.
INFERENCE_CPUS = 2
INFERENCE_CPU_REQUEST = "1500m"

# A busy consumer holds up to CONSUMER_MAX_INFLIGHT_BATCHES x CONSUMER_BATCH_MAX_FRAMES uncommitted frames
# (the consumer's own defaults), which count as lag: a threshold at or below this would read a saturated
# replica that keeps up as behind, so the thresholds never go below it.
_CONSUMER = ConsumerSettings.model_fields
CONSUMER_INFLIGHT_FRAMES = int(_CONSUMER["max_inflight_batches"].default) * int(_CONSUMER["batch_max_frames"].default)


@dataclass(frozen=True)
class Throughput:
    pipeline_fps: float  # consumer + inference pair, end to end, per replica
    inference_fps: float  # the inference service alone, per replica
    source: str
    instances: int = 1  # model instances per inference pod (INFERENCE_INSTANCES)
    threads_per_instance: int = INFERENCE_CPUS  # INFERENCE_INTRA_OP_THREADS


# docs/PERFORMANCE.md (make bench, 2 vCPUs, YOLOv4-tiny 416x416): (d) end-to-end capacity 18.65 frames/s,
# (b) inference service best 19.63 frames/s, both running the best bare configuration, onnxruntime f32
# with 2 instances x 1 thread.
DOCUMENTED = Throughput(
    pipeline_fps=18.65,
    inference_fps=19.63,
    source="docs/PERFORMANCE.md (make bench, 2 vCPUs)",
    instances=2,
    threads_per_instance=1,
)


def measured(path: Path) -> Throughput:
    """A bench run's figures per inference-pod-sized replica, else DOCUMENTED."""
    try:
        report = json.loads(path.read_text())
        cpus = int(
            report.get("fps_per_vcpu", {}).get("cpus") or report.get("machine", {}).get("cpus") or INFERENCE_CPUS
        )
        share = min(1.0, INFERENCE_CPUS / cpus)
        pipeline, inference = float(report["end_to_end"]["fps"]), float(report["service"]["fps"])
        best = report.get("bare", {}).get("best", {})
        threads = min(INFERENCE_CPUS, max(1, int(best.get("threads_per_instance") or INFERENCE_CPUS)))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return DOCUMENTED
    if pipeline <= 0 or inference <= 0:
        return DOCUMENTED
    return Throughput(
        pipeline_fps=round(pipeline * share, 2),
        inference_fps=round(inference * share, 2),
        source=f"{path} ({cpus} cores)",
        instances=max(1, INFERENCE_CPUS // threads),
        threads_per_instance=threads,
    )


THROUGHPUT = DOCUMENTED


def lag_threshold(fps_per_replica: float, latency_budget_s: float) -> int:
    """The backlog one replica clears within the budget, never at or below the consumer's in-flight depth."""
    return max(CONSUMER_INFLIGHT_FRAMES + 1, math.floor(fps_per_replica * latency_budget_s))


def settings_for(throughput: Throughput) -> dict[str, dict[str, float | int]]:
    """The settings.yaml sections (cdk8s_app/settings.yaml, or the CDK context) that deploy these figures."""
    return {
        "scaling": {
            "pipeline_fps_per_replica": throughput.pipeline_fps,
            "inference_fps_per_replica": throughput.inference_fps,
        },
        "resources": {
            "inference_instances": throughput.instances,
            "inference_threads": throughput.threads_per_instance,
        },
    }


def main(argv: list[str] | None = None) -> int:
    import argparse

    import yaml

    parser = argparse.ArgumentParser(description="A bench run's figures as deploy settings (settings.yaml).")
    parser.add_argument("bench_file", type=Path, help="a make bench result, e.g. bench/results/latest.json")
    args = parser.parse_args(argv)
    throughput = measured(args.bench_file)
    if throughput is DOCUMENTED:
        print(f"error: {args.bench_file} holds no usable bench figures", file=sys.stderr)
        return 1
    print(f"# from {throughput.source}")
    print(yaml.safe_dump(settings_for(throughput), sort_keys=False), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
