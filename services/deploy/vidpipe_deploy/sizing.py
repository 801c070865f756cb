"""The inference pod's size and the autoscaling thresholds, per node type, from the committed figures.

KEDA's lagThreshold per Deployment is `throughput per replica x latency budget` (docs/KEDA_KAFKA_LAG.md).
The throughput is the CPU class's service frames/s per vCPU in figures.json (vidpipe_deploy.figures) times
the vCPUs the pod gets on the inference pool's node type: a synth is a function of the commit and its
configuration alone, never of files a machine happens to hold.

The rule, for any node type: **one inference pod per node**. It requests the node's allocatable CPU less the
daemonsets' requests (rounded down to 100m), its CPU limit is the node's vCPUs, and it runs one serving
process per CPU of that limit (INFERENCE_PROCESSES left to the service), each with one model instance of one
thread (INFERENCE_INSTANCES and INFERENCE_INTRA_OP_THREADS count per process): one instance of one thread per
CPU is the best layout on every class measured (2 x 1 on the Zen 3 run, 16 x 1 and 2 x 1 in bf16 on the Xeon). Its throughput counts the CPUs it requests, never the burst above them. Against several
smaller pods per node, one pod:
- loads the model, runs the start-up accuracy gate and holds the fixed ~300 MiB of a serving pod once per
  node, not once per pod;
- strands no CPU between pods: on a 4-vCPU node (3095m left beside the daemonsets) it requests 3000m and
  bursts to all 4 vCPUs, where pods of 1 CPU would get three and leave the rest to no one;
- costs nothing in scaling granularity: the node groups have no autoscaler, so capacity comes in nodes, and
  a pod that does not fit a node waits Pending.
The pod's memory is 100 MiB + 450 MiB per CPU of its limit (request = limit): one serving process per CPU.

`python -m vidpipe_deploy.sizing --node c7i.2xlarge` prints the settings the committed figures give for a
node type; with a bench report (`bench/results/latest.json`), the settings that run's per-vCPU figures give;
`--record <report>` (make bench-record) rewrites the committed figures of the class the run measured.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from consumer_service.settings import ConsumerSettings

from . import figures as committed
from .figures import Figures, FiguresError, InstanceType, Status

# The CDK inference node group's default instance type, and the charts' (PlatformWiring.inference_node_type).
DEFAULT_NODE_TYPE = "c7i.xlarge"

# A serving pod's memory: its supervisor (45 MB measured) and slack, then one serving process per CPU, each
# holding its interpreter, runtime and model (270-306 MB RSS measured after load, OpenVINO and onnxruntime)
# and the requests it has in flight (decoding two 4K frames takes about 180 MB at the most).
MEMORY_BASE_MI = 100
MEMORY_PER_CPU_MI = 450
# The consumer pod's CPU limit (PlatformWiring's default): what one consumer replica has to move frames with.
CONSUMER_CPU_LIMIT = 1

# A busy consumer holds up to CONSUMER_MAX_INFLIGHT_BATCHES x CONSUMER_BATCH_MAX_FRAMES uncommitted frames
# (the consumer's own defaults), which count as lag: a threshold at or below this would read a saturated
# replica that keeps up as behind, so the thresholds never go below it.
_CONSUMER = ConsumerSettings.model_fields
CONSUMER_INFLIGHT_FRAMES = int(_CONSUMER["max_inflight_batches"].default) * int(_CONSUMER["batch_max_frames"].default)


@dataclass(frozen=True)
class Throughput:
    pipeline_fps: float  # one consumer replica with the inference behind it, end to end
    inference_fps: float  # one inference pod
    source: str
    instances: int = 1  # model instances per serving process (INFERENCE_INSTANCES)
    threads_per_instance: int = 1  # INFERENCE_INTRA_OP_THREADS


@dataclass(frozen=True)
class PodSizing:
    """The inference pod on one node type, and the throughput figures it is scaled by."""

    node: InstanceType
    cpu_class: str
    status: Status
    cpu_request_m: int
    cpu_limit: int
    memory_mi: int
    fps_per_vcpu: float  # the class's service figure
    inference_fps: float
    pipeline_fps: float
    processes: int  # serving processes: one per CPU of the limit (the service's own default)
    instances: int = 1  # per process
    threads_per_instance: int = 1

    @property
    def cpus(self) -> float:
        """The CPUs the pod is guaranteed (its request): what its throughput counts."""
        return self.cpu_request_m / 1000

    @property
    def resources(self) -> dict[str, str]:
        memory = f"{self.memory_mi}Mi"
        return {
            "cpu_request": f"{self.cpu_request_m}m",
            "cpu_limit": str(self.cpu_limit),
            "memory_request": memory,
            "memory_limit": memory,
        }

    @property
    def note(self) -> str:
        return f"{self.node.name}: {self.cpu_class} ({self.status}, vidpipe_deploy/figures.json)"

    @property
    def throughput(self) -> Throughput:
        return Throughput(
            pipeline_fps=self.pipeline_fps,
            inference_fps=self.inference_fps,
            source=self.note,
            instances=self.instances,
            threads_per_instance=self.threads_per_instance,
        )


def e2e_over_service(figures: Figures) -> float:
    """End-to-end over the service, from the classes where a run measured both (the consumer's share)."""
    ratios = [
        c.fps_per_vcpu.end_to_end / c.fps_per_vcpu.service
        for c in figures.cpu_classes.values()
        if c.status == "measured" and c.fps_per_vcpu.end_to_end
    ]
    return round(sum(ratios) / len(ratios), 3) if ratios else 1.0


def consumer_fps(figures: Figures) -> float:
    """What one consumer replica moves at its CPU limit."""
    return CONSUMER_CPU_LIMIT * 1000 / figures.general_pool.consumer_cpu_ms_per_frame.value


def for_node(
    node_type: str = DEFAULT_NODE_TYPE, *, cpu_class: str | None = None, figures: Figures | None = None
) -> PodSizing:
    """The inference pod on `node_type` (its class's figures, or `cpu_class`'s on its layout); FiguresError for a
    type or class without committed figures, or a node too small for a 1-CPU pod beside the daemonsets."""
    figures = figures or committed.load()
    node = committed.instance(node_type, figures)
    name = cpu_class or node.cpu_class
    klass = figures.cpu_class(name)
    free = node.allocatable_cpu_m - figures.node.daemonset_cpu_m
    request = free // 100 * 100
    if request < 1000:
        raise FiguresError(
            f"{node_type}: {free}m of CPU left beside the daemonsets, less than one CPU for the inference pod"
        )
    memory = MEMORY_BASE_MI + MEMORY_PER_CPU_MI * node.vcpus
    if memory > node.allocatable_memory_mi - figures.node.daemonset_memory_mi:
        raise FiguresError(f"{node_type}: {memory} MiB for the inference pod does not fit its memory")
    per_vcpu = klass.fps_per_vcpu
    inference = round(request / 1000 * per_vcpu.service, 2)
    ratio = per_vcpu.end_to_end / per_vcpu.service if per_vcpu.end_to_end else e2e_over_service(figures)
    return PodSizing(
        node=node,
        cpu_class=name,
        status=klass.status,
        cpu_request_m=request,
        cpu_limit=node.vcpus,
        memory_mi=memory,
        fps_per_vcpu=per_vcpu.service,
        inference_fps=inference,
        pipeline_fps=round(min(inference * ratio, consumer_fps(figures)), 2),
        processes=node.vcpus,
    )


def lag_threshold(fps_per_replica: float, latency_budget_s: float) -> int:
    """The backlog one replica clears within the budget, never at or below the consumer's in-flight depth."""
    return max(CONSUMER_INFLIGHT_FRAMES + 1, math.floor(fps_per_replica * latency_budget_s))


def measured(path: Path, pod: PodSizing | None = None) -> Throughput | None:
    """A bench report's per-vCPU figures for the inference pod on `pod`'s node type (the default one), or None
    when the file holds no usable figures. A linear approximation: frames/s per vCPU x the pod's CPUs."""
    pod = pod or for_node()
    try:
        report = json.loads(path.read_text())
        per_vcpu = report.get("fps_per_vcpu") or {}
        cpus = int(per_vcpu.get("cpus") or report.get("machine", {}).get("cpu_limit") or report["machine"]["cpus"])
        service = float(per_vcpu.get("service") or report["service"]["fps"] / cpus)
        e2e = float(per_vcpu.get("end_to_end") or report["end_to_end"]["fps"] / cpus)
    except (OSError, ValueError, KeyError, TypeError, AttributeError, ZeroDivisionError):
        return None
    if service <= 0 or e2e <= 0:
        return None
    return Throughput(
        pipeline_fps=round(min(e2e * pod.cpus, consumer_fps(committed.load())), 2),
        inference_fps=round(service * pod.cpus, 2),
        source=f"{path} ({cpus} vCPUs), for one pod of {pod.cpu_request_m}m on {pod.node.name}",
        instances=pod.instances,
        threads_per_instance=pod.threads_per_instance,
    )


def settings_for(throughput: Throughput) -> dict[str, dict[str, float | int]]:
    """The settings.yaml sections (cdk8s_app/settings.yaml) that deploy these figures."""
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

    parser = argparse.ArgumentParser(
        description="The inference pod and KEDA settings for a node type: from the committed figures, from a "
        "bench run, or record a bench run into the committed figures."
    )
    parser.add_argument("bench_file", type=Path, nargs="?", help="a make bench result, e.g. bench/results/latest.json")
    parser.add_argument(
        "--node", default=DEFAULT_NODE_TYPE, help=f"the inference node type (default {DEFAULT_NODE_TYPE})"
    )
    parser.add_argument("--record", action="store_true", help="rewrite the committed figures of the run's CPU class")
    parser.add_argument("--cpu-class", help="with --record: the class the run measured, where its flags do not say")
    parser.add_argument("--command", help="with --record: the command that measured it (default: from the report)")
    args = parser.parse_args(argv)
    try:
        if args.record:
            if args.bench_file is None:
                parser.error("--record needs a bench report")
            return _record(args.bench_file, args.cpu_class, args.command)
        pod = for_node(args.node)
    except FiguresError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.bench_file is None:
        print(f"# {pod.note}")
        settings: dict[str, Any] = {"inference_node_type": args.node, **settings_for(pod.throughput)}
    else:
        throughput = measured(args.bench_file, pod)
        if throughput is None:
            print(f"error: {args.bench_file} holds no usable bench figures", file=sys.stderr)
            return 1
        print(f"# from {throughput.source}")
        settings = {"inference_node_type": args.node, **settings_for(throughput)}
    print(yaml.safe_dump(settings, sort_keys=False), end="")
    return 0


def _record(path: Path, cpu_class: str | None, command: str | None) -> int:
    try:
        report = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        print(f"error: {path}: {exc}", file=sys.stderr)
        return 1
    name = committed.record(report, cpu_class=cpu_class, command=command)
    entry = committed.load().cpu_class(name)
    print(f"{committed.FIGURES_FILE.name}: {name} now measured on {entry.measured_on} ({entry.date}, {entry.command})")
    print(json.dumps(entry.fps_per_vcpu.model_dump(), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
