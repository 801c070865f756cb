"""Where the autoscaling thresholds and the inference pod's CPU come from: one place.

KEDA's lagThreshold per Deployment is `throughput per replica x latency budget` (docs/KEDA_KAFKA_LAG.md).
The throughput is measured by `make bench`:

- when bench/results/latest.json exists (it is gitignored: a measurement of the machine it ran on),
  `end_to_end.fps` (consumer + inference, a backlog drained) and `service.fps` (the inference service
  alone, best of its sweep, running the best bare configuration) are read from it, scaled to the
  inference pod's CPUs when the bench machine had more (`fps_per_vcpu.cpus`, the bench's cgroup CPU
  limit, else `machine.cpus`; a linear approximation, exact for the 2-core runs);
- the model instances and threads per instance the pod runs are the bench's best configuration
  (`bare.best`), its threads per instance kept and its instance count fitted to the pod's CPUs, so the
  pod runs what the throughput was measured with;
- otherwise `DOCUMENTED`, the figures of the run docs/PERFORMANCE.md reports.

So a synth never needs the bench file, and a fresh bench run moves the thresholds without an edit.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

BENCH_FILE = Path(__file__).resolve().parent.parent / "bench" / "results" / "latest.json"

# The inference pod: intra-op threads = CPU limit = the cores the bench measures one replica on.
# 1.5 CPUs requested so one pod fits a 2-vCPU share of a 4-vCPU node (c6i.xlarge) next to the daemonsets.
INFERENCE_CPUS = 2
INFERENCE_CPU_REQUEST = "1500m"

# A busy consumer holds up to CONSUMER_MAX_INFLIGHT_BATCHES x CONSUMER_BATCH_MAX_FRAMES (3 x 16, the
# consumer's defaults) uncommitted frames, which count as lag: a threshold at or below this would read a
# saturated replica that keeps up as behind, so the thresholds never go below it.
CONSUMER_INFLIGHT_FRAMES = 3 * 16


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


def measured(path: Path = BENCH_FILE) -> Throughput:
    """The latest bench run's figures per inference-pod-sized replica, else DOCUMENTED."""
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


THROUGHPUT = measured()


def lag_threshold(fps_per_replica: float, latency_budget_s: float) -> int:
    """The backlog one replica clears within the budget, never at or below the consumer's in-flight depth."""
    return max(CONSUMER_INFLIGHT_FRAMES + 1, math.floor(fps_per_replica * latency_budget_s))
