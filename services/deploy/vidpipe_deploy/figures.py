"""The committed figures the inference pod, the KEDA thresholds and the fleet planner derive from.

figures.json (beside this module, package data) holds, per CPU class, the default model's frames/s per vCPU
for each backend and precision a run measured, the CPU it ran on, the date and the command, and whether the
class was measured or is an estimate (and then how it was estimated); the EC2 instance families each class
runs in; what a node keeps for itself; the other services' CPU per frame; MSK brokers' capacity.
prices.json holds the dated on-demand prices the planner costs a fleet with.

A synth reads these committed files only, never a file a machine happens to hold: `record` (python -m
vidpipe_deploy.sizing --record, make bench-record) is how a bench run on a class's hardware changes them,
as a reviewed diff.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from functools import cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, model_validator

from .facts import FrozenModel

FIGURES_FILE = Path(__file__).with_name("figures.json")
PRICES_FILE = Path(__file__).with_name("prices.json")

Status = Literal["measured", "estimate"]
INSTANCE_TYPE = re.compile(r"^(?P<family>[a-z][a-z0-9-]*)\.(?P<size>[a-z0-9]+)$")
DATE = r"^\d{4}-\d{2}-\d{2}$"


class FiguresError(ValueError):
    """No committed figures for what was asked (an unknown instance type or class, an estimate refused)."""


class PerVcpu(FrozenModel):
    # "backend precision" -> frames/s per vCPU of that backend's best configuration, no I/O
    bare: dict[str, float]
    service: float = Field(gt=0, description="the inference service running the best configuration")
    end_to_end: float | None = Field(default=None, gt=0, description="consumer and inference, from Kafka")


class CpuClass(FrozenModel):
    title: str
    bf16: str  # the native bf16 flags (amx_bf16, avx512_bf16) or "none"
    status: Status
    date: str = Field(pattern=DATE)
    measured_on: str | None = None
    command: str | None = None
    vcpus: int | None = Field(default=None, ge=1)
    serving: str  # "backend precision" the service runs under INFERENCE_PRECISION=auto here
    fps_per_vcpu: PerVcpu
    priced_as: str  # the instance type whose price stands for this class (cost_per_camera_hour)
    estimate: str | None = None  # how an estimate was made
    notes: str | None = None

    @model_validator(mode="after")
    def _provenance(self) -> CpuClass:
        if self.status == "estimate" and not self.estimate:
            raise ValueError("an estimate must say how it was estimated (estimate)")
        if self.status == "measured" and not (self.measured_on and self.command and self.vcpus):
            raise ValueError("measured figures must name the CPU, the command and the vCPUs")
        return self

    @property
    def label(self) -> str:
        return "measured" if self.status == "measured" else "estimate"


class Family(FrozenModel):
    cpu_class: str
    memory_gib_per_vcpu: float = Field(gt=0)


class Daemonset(FrozenModel):
    name: str
    cpu_m: int = Field(ge=0)
    memory_mi: int = Field(ge=0)
    how: str


class NodeFacts(FrozenModel):
    vcpus_by_size: dict[str, int]
    max_pods_by_size: dict[str, int]
    max_pods_how: str
    kube_reserved_how: str
    daemonsets: tuple[Daemonset, ...]

    @property
    def daemonset_cpu_m(self) -> int:
        return sum(d.cpu_m for d in self.daemonsets)

    @property
    def daemonset_memory_mi(self) -> int:
        return sum(d.memory_mi for d in self.daemonsets)


class Figure(FrozenModel):
    value: float
    status: Literal["measured", "assumption", "recalled"]
    how: str


class GeneralPool(FrozenModel):
    """The other services' costs: what the general pool and the transport are sized from."""

    jpeg_kb: Figure
    result_bytes_per_frame: Figure
    publisher_decode_cpu_m: Figure
    publisher_cpu_ms_per_frame: Figure
    consumer_cpu_ms_per_frame: Figure
    analytics_cpu_ms_per_frame: Figure
    cluster_pods_cpu_m: Figure
    cluster_pods_memory_mi: Figure
    cluster_pods: Figure

    def items(self) -> list[tuple[str, Figure]]:
        return [(name, getattr(self, name)) for name in type(self).model_fields]


class BrokerSize(FrozenModel):
    ebs_baseline_mbit_s: float = Field(gt=0)
    network_baseline_gbit_s: float = Field(gt=0)


class KafkaFacts(FrozenModel):
    max_utilization: float = Field(gt=0, le=1)
    utilization_how: str
    brokers: dict[str, BrokerSize]
    brokers_how: str


class Figures(FrozenModel):
    about: str
    model: str
    cpu_classes: dict[str, CpuClass]
    instance_families: dict[str, Family]
    node: NodeFacts
    general_pool: GeneralPool
    kafka: KafkaFacts

    @model_validator(mode="after")
    def _known_classes(self) -> Figures:
        unknown = sorted({f.cpu_class for f in self.instance_families.values()} - set(self.cpu_classes))
        if unknown:
            raise ValueError(f"instance_families name CPU classes without figures: {unknown}")
        return self

    def cpu_class(self, name: str) -> CpuClass:
        try:
            return self.cpu_classes[name]
        except KeyError:
            raise FiguresError(f"no figures for CPU class {name!r} (known: {', '.join(self.cpu_classes)})") from None


class Prices(FrozenModel):
    about: str
    region: str
    currency: str
    as_of: str = Field(pattern=DATE)
    status: Literal["recalled", "fetched"]
    sources: dict[str, str]
    hours_per_month: float = Field(gt=0)
    ec2_linux_hourly: dict[str, float]
    general_pool_candidates: tuple[str, ...]
    msk_broker_hourly: dict[str, float]
    msk_storage_gb_month: float
    eks_cluster_hourly: float
    ebs_gp3_gb_month: float
    s3_standard_gb_month: float
    s3_put_per_1000: float
    nat_gateway_hourly: float
    interface_endpoint_az_hourly: float
    public_ipv4_hourly: float

    def ec2(self, instance_type: str) -> float:
        try:
            return self.ec2_linux_hourly[instance_type]
        except KeyError:
            raise FiguresError(
                f"no price for {instance_type} in prices.json (priced: {', '.join(self.ec2_linux_hourly)})"
            ) from None


def load(path: Path | None = None) -> Figures:
    """The committed figures (figures.json beside this module, unless `path`)."""
    return _load(path or FIGURES_FILE)


def prices(path: Path | None = None) -> Prices:
    """The committed prices (prices.json beside this module, unless `path`)."""
    return _prices(path or PRICES_FILE)


@cache
def _load(path: Path) -> Figures:
    try:
        return Figures.model_validate_json(path.read_bytes())
    except ValidationError as exc:
        raise FiguresError(f"{path}: {exc}") from None


@cache
def _prices(path: Path) -> Prices:
    try:
        return Prices.model_validate_json(path.read_bytes())
    except ValidationError as exc:
        raise FiguresError(f"{path}: {exc}") from None


def clear_cache() -> None:
    """Read the files again on the next call (after `record` rewrote one, or a test pointed at a copy)."""
    _load.cache_clear()
    _prices.cache_clear()


class InstanceType(FrozenModel):
    """An EC2 instance type as the figures know it."""

    name: str
    family: str
    vcpus: int
    memory_mi: int
    max_pods: int
    cpu_class: str

    @property
    def allocatable_cpu_m(self) -> int:
        """The node's CPU less the kubelet's kube-reserved share (the EKS AMI's formula)."""
        reserved = 60.0 + 10.0 * min(max(self.vcpus - 1, 0), 1) + 5.0 * min(max(self.vcpus - 2, 0), 2)
        reserved += 2.5 * max(self.vcpus - 4, 0)
        return self.vcpus * 1000 - round(reserved)

    @property
    def allocatable_memory_mi(self) -> int:
        return self.memory_mi - (255 + 11 * self.max_pods) - 100


def instance(name: str, figures: Figures | None = None) -> InstanceType:
    """The instance type's vCPUs, memory, pod limit and CPU class, or FiguresError naming what is known."""
    figures = figures or load()
    match = INSTANCE_TYPE.match(name)
    family = figures.instance_families.get(match["family"]) if match else None
    vcpus = figures.node.vcpus_by_size.get(match["size"]) if match else None
    if match is None or family is None or vcpus is None:
        raise FiguresError(
            f"no committed figures for instance type {name!r}: known families "
            f"{', '.join(figures.instance_families)}, sizes {', '.join(figures.node.vcpus_by_size)} "
            "(vidpipe_deploy/figures.json)"
        )
    return InstanceType(
        name=name,
        family=match["family"],
        vcpus=vcpus,
        memory_mi=int(vcpus * family.memory_gib_per_vcpu * 1024),
        max_pods=figures.node.max_pods_by_size[match["size"]],
        cpu_class=family.cpu_class,
    )


def is_instance_type(name: str) -> bool:
    return bool(INSTANCE_TYPE.match(name))


# --- recording a bench run -------------------------------------------------------------------


def classify(machine: dict[str, Any]) -> str | None:
    """The CPU class of a bench report's machine where its model name and flags say it unambiguously: the
    Intel generations with AMX share their flags, so those are named by hand (--cpu-class)."""
    model = str(machine.get("cpu_model", ""))
    bf16 = str(machine.get("bf16", "none"))
    if "AMD" in model:
        if "avx512_bf16" in bf16:
            return "amd-epyc-zen4"
        return "amd-epyc-zen3" if not machine.get("avx512") else None
    if "Intel" in model and bf16 == "none" and machine.get("avx512"):
        return "intel-xeon-ice-lake"
    return None


def per_vcpu_from_report(report: dict[str, Any]) -> tuple[int, PerVcpu, str]:
    """A bench report's (vCPUs, frames/s per vCPU, the configuration the service ran): the best of each
    backend and precision the gates allow, the service, and the pipeline when the run had a broker."""
    derived = report["fps_per_vcpu"]
    cpus = int(derived["cpus"])
    bare: dict[str, float] = {}
    for config in report["bare"]["configurations"]:
        if config.get("excluded"):
            continue  # what the service may not serve sizes nothing
        key = f"{config['backend']} {config['precision']}"
        bare[key] = max(bare.get(key, 0.0), round(float(config["fps"]) / cpus, 2))
    best = report["bare"]["best"]
    per_vcpu = PerVcpu(
        bare=dict(sorted(bare.items(), key=lambda item: -item[1])),
        service=float(derived["service"]),
        end_to_end=float(derived["end_to_end"]) if derived.get("end_to_end") else None,
    )
    return cpus, per_vcpu, f"{best['backend']} {best['precision']}"


def record(
    report: dict[str, Any],
    *,
    cpu_class: str | None = None,
    command: str | None = None,
    path: Path | None = None,
) -> str:
    """Rewrite the figures of the class the report's machine belongs to with the report's, dated and with the
    command that measured them; returns the class. Raises FiguresError when the class cannot be told."""
    path = path or FIGURES_FILE
    machine = report.get("machine", {})
    name = cpu_class or classify(machine)
    if name is None:
        raise FiguresError(
            f"which CPU class is {machine.get('cpu_model', 'this machine')!r} (bf16: {machine.get('bf16')})? "
            "Name it: --cpu-class <class>; Intel generations with AMX share their flags"
        )
    try:
        cpus, per_vcpu, serving = per_vcpu_from_report(report)
    except (KeyError, TypeError, ValueError) as exc:
        raise FiguresError(f"the report lacks the per-vCPU figures a bench run writes ({exc!r})") from None
    document = json.loads(path.read_text())
    previous = document["cpu_classes"].get(name)
    if previous is None:
        raise FiguresError(f"no class {name!r} in {path.name}: add its entry (title, priced_as) first")
    started = str(report.get("started") or "")[:10] or dt.date.today().isoformat()
    bf16 = str(machine.get("bf16") or "none")
    entry = CpuClass(
        title=previous["title"],
        bf16=bf16,
        status="measured",
        date=started,
        measured_on=f"{cpus}-vCPU {machine.get('cpu_model', '?')}, bf16: {bf16}"
        + ("" if report.get("end_to_end") else ", no broker"),
        command=command or ("make bench" if report.get("end_to_end") else "python -m bench.run --no-kafka"),
        vcpus=cpus,
        serving=serving,
        fps_per_vcpu=per_vcpu,
        priced_as=previous["priced_as"],
        estimate=None,
        notes=None,
    )
    document["cpu_classes"][name] = entry.model_dump(mode="json")
    Figures.model_validate(document)  # never write a file the synth would refuse
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    clear_cache()
    return name
