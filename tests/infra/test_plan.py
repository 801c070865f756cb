"""The committed figures (vidpipe_deploy/figures.json, prices.json), recording a bench run into them, the
inference pod per node type and the fleet planner: pure functions of the committed files, no synth."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from vidpipe_deploy import figures, plan, sizing
from vidpipe_deploy.figures import FiguresError

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def figures_copy(tmp_path, monkeypatch):
    """figures.json copied aside and read instead of the committed one for the test."""
    copy = tmp_path / "figures.json"
    copy.write_text(figures.FIGURES_FILE.read_text())
    monkeypatch.setattr(figures, "FIGURES_FILE", copy)
    figures.clear_cache()
    yield copy
    monkeypatch.undo()
    figures.clear_cache()


def test_every_class_says_where_its_figures_come_from_and_every_family_has_one():
    committed = figures.load()
    prices = figures.prices()
    for name, klass in committed.cpu_classes.items():
        if klass.status == "measured":
            assert klass.measured_on and klass.command and klass.vcpus, name
        else:
            assert klass.estimate, f"{name}: an estimate says how it was made"
        assert klass.fps_per_vcpu.service > 0
        assert prices.ec2(klass.priced_as) > 0, f"{name} is priced as {klass.priced_as}"
    assert {c for c, k in committed.cpu_classes.items() if k.status == "measured"} == {
        "amd-epyc-zen3",
        "intel-xeon-emerald-rapids",
    }
    families = {name: f.cpu_class for name, f in committed.instance_families.items()}
    assert families["c6i"] == "intel-xeon-ice-lake" and families["c7i"] == "intel-xeon-sapphire-rapids"
    assert families["c8i"] == "intel-xeon-granite-rapids" and families["c7a"] == "amd-epyc-zen4"
    assert families["c6a"] == "amd-epyc-zen3"
    assert committed.cpu_classes["intel-xeon-ice-lake"].bf16 == "none", "c6i: f32 only"
    assert prices.as_of and prices.status == "recalled" and prices.sources["ec2"].startswith("https://aws.amazon.com/")


def test_an_estimate_without_its_method_is_refused():
    document = json.loads(figures.FIGURES_FILE.read_text())
    document["cpu_classes"]["intel-xeon-sapphire-rapids"]["estimate"] = None
    with pytest.raises(ValueError, match="an estimate must say how it was estimated"):
        figures.Figures.model_validate(document)


@pytest.mark.parametrize(
    ("node", "request_m", "limit", "memory_mi", "fps"),
    [
        # allocatable (vCPUs less the kubelet's share) less 825m of daemonsets, rounded down to 100m
        ("c7i.xlarge", 3000, 4, 1900, 85.26),  # 3 x 28.42 (Sapphire Rapids, estimate)
        ("c7i.2xlarge", 7000, 8, 3700, 198.94),
        ("c6i.xlarge", 3000, 4, 1900, 35.52),  # 3 x 11.84 (Ice Lake, f32, estimate)
        ("c6a.xlarge", 3000, 4, 1900, 29.43),  # 3 x 9.81 (Zen 3, measured)
    ],
)
def test_one_inference_pod_per_node_from_the_class_figures(node, request_m, limit, memory_mi, fps):
    pod = sizing.for_node(node)
    assert (pod.cpu_request_m, pod.cpu_limit, pod.memory_mi, pod.inference_fps) == (request_m, limit, memory_mi, fps)
    assert (pod.processes, pod.instances, pod.threads_per_instance) == (limit, 1, 1)
    assert pod.pipeline_fps <= min(pod.inference_fps, sizing.consumer_fps(figures.load()))


def test_node_types_without_figures_or_room_are_refused():
    with pytest.raises(FiguresError, match="no committed figures for instance type 'm5.xlarge'"):
        sizing.for_node("m5.xlarge")
    with pytest.raises(FiguresError, match="no committed figures"):
        sizing.for_node("c7i.metal")
    with pytest.raises(FiguresError, match="no figures for CPU class"):
        sizing.for_node("c7i.xlarge", cpu_class="intel-xeon-cascade-lake")


def test_the_plan_adds_up_and_sizes_every_pool():
    fleet = plan.plan(200, 5.0, "c7i.2xlarge", allow_estimates=True)
    pod = sizing.for_node("c7i.2xlarge")
    assert fleet.frames_per_s == 1000
    assert fleet.inference_pods == fleet.inference.nodes == math.ceil(1000 / (pod.inference_fps * plan.HEADROOM))
    assert fleet.consumers == math.ceil(1000 / (pod.pipeline_fps * plan.HEADROOM))
    assert fleet.partitions >= max(fleet.consumers, fleet.analytics, 6)
    # One publisher pod per 25 cameras (the charts' scaling rule), not one per camera.
    assert fleet.publishers == 8 and plan.plan(1000, 5.0, "c7i.2xlarge", allow_estimates=True).publishers == 24
    assert plan.plan(10, 5.0, "c7i.2xlarge", allow_estimates=True).publishers == 2, "never fewer than two"
    assert fleet.general.nodes >= plan.MIN_GENERAL_NODES
    assert fleet.general.pods >= fleet.publishers + fleet.consumers + fleet.analytics
    assert fleet.kafka.brokers % plan.AZS == 0 and fleet.kafka.capacity_mb_s >= fleet.kafka.ingress_mb_s
    assert fleet.monthly == pytest.approx(sum(line.monthly for line in fleet.lines), abs=0.05)
    assert fleet.per_camera_month == pytest.approx(fleet.monthly / 200, abs=0.01)
    prices = figures.prices()
    puts = next(line for line in fleet.lines if line.item.startswith("S3 PUT"))
    # one PUT per archived frame, one per batch of results
    assert puts.monthly == pytest.approx(1000 * 3600 * 730 * (1 + 1 / 16) / 1000 * prices.s3_put_per_1000, rel=1e-3)
    assert fleet.inference_per_camera_hour == pytest.approx(prices.ec2("c7i.2xlarge") * 5 / pod.inference_fps, abs=1e-5)
    assert any(a.startswith("consumer_cpu_ms_per_frame") and "assumption" in a for a in fleet.assumptions)
    assert fleet.status == "estimate" and fleet.estimate
    assert plan.plan(2000, 5.0, "c7i.2xlarge", allow_estimates=True).kafka.brokers > fleet.kafka.brokers


def test_estimated_classes_are_refused_unless_allowed_and_marked(capsys):
    with pytest.raises(plan.EstimateRefused, match="intel-xeon-sapphire-rapids are an estimate"):
        plan.plan(10, 5.0, "c7i.2xlarge")
    assert plan.plan(10, 5.0, "c6a.xlarge").status == "measured"
    assert plan.main(["--cameras", "10", "--node", "c7i.2xlarge"]) == 1
    assert "--allow-estimates" in capsys.readouterr().err
    assert plan.main(["--cameras", "10", "--node", "c7i.2xlarge", "--allow-estimates"]) == 0
    out = capsys.readouterr().out
    assert "ESTIMATE" in out and "| **total** |" in out and "not included:" in out
    assert plan.main(["--cameras", "10", "--node", "c6a.xlarge", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["status"] == "measured" and document["inference"]["node_type"] == "c6a.xlarge"
    assert plan.main(["--cameras", "10", "--node", "m8i.xlarge", "--allow-estimates"]) == 1, "figures, no price"
    assert "no price for m8i.xlarge" in capsys.readouterr().err


def test_cost_per_camera_hour_for_a_node_type_or_a_class():
    prices = figures.prices()
    assert plan.cost_per_camera_hour("c6a.xlarge") == pytest.approx(prices.ec2("c6a.xlarge") * 5 / (3 * 9.81))
    # A class: its own figures on its priced_as type's layout, at that type's price.
    assert plan.cost_per_camera_hour("intel-xeon-emerald-rapids", fps=10) == pytest.approx(
        prices.ec2("c7i.xlarge") * 10 / (3 * 31.58)
    )
    with pytest.raises(plan.EstimateRefused):
        plan.cost_per_camera_hour("c7i.xlarge")
    assert plan.cost_per_camera_hour("c7i.xlarge", allow_estimates=True) < plan.cost_per_camera_hour(
        "c6i.xlarge", allow_estimates=True
    ), "bf16 on AMX beats f32 on Ice Lake per camera"


def test_the_readme_table_is_the_planners_output():
    text = (ROOT / "README.md").read_text()
    start, end = text.index(plan.README_BEGIN), text.index(plan.README_END)
    assert text[start + len(plan.README_BEGIN) : end].strip() == plan.readme_block().strip(), (
        "README.md's fleet table is stale: python -m vidpipe_deploy.plan --readme"
    )


def test_the_planner_keeps_the_cdk_apps_defaults():
    from cdk_app.config import PlatformConfig
    from vidpipe.contract import DEFAULT_PARTITIONS

    defaults = {name: f.default for name, f in PlatformConfig.model_fields.items()}
    assert plan.FRAMES_EXPIRE_DAYS == defaults["frames_expire_after_days"]
    assert plan.NONCURRENT_DAYS == defaults["noncurrent_expire_after_days"]
    assert plan.REPLICATION_FACTOR == defaults["replication_factor"]
    assert plan.AZS == defaults["max_azs"]
    assert plan.MIN_BROKER_VOLUME_GIB == defaults["broker_volume_gib"]
    assert plan.MIN_GENERAL_NODES == defaults["general_nodes"].min_size
    assert plan.NODE_VOLUME_GIB == defaults["general_nodes"].disk_size_gib == defaults["inference_nodes"].disk_size_gib
    assert defaults["broker_instance_type"] in figures.load().kafka.brokers
    assert defaults["inference_nodes"].instance_types == [sizing.DEFAULT_NODE_TYPE]
    assert plan.plan(10, 5.0, "c6a.xlarge").partitions == DEFAULT_PARTITIONS


AMD_ZEN4_RUN = {
    "started": "2026-12-08T10:00:00Z",
    "machine": {"cpus": 2, "cpu_limit": 2, "cpu_model": "AMD EPYC", "avx512": True, "bf16": "avx512_bf16"},
    "bare": {
        "configurations": [
            {"backend": "onnxruntime", "precision": "f32", "instances": 2, "fps": 30.0, "excluded": None},
            {"backend": "openvino", "precision": "bf16", "instances": 2, "fps": 56.0, "excluded": None},
            {"backend": "openvino", "precision": "bf16", "instances": 1, "fps": 48.0, "excluded": None},
            {"backend": "openvino", "precision": "int8", "instances": 2, "fps": 90.0, "excluded": "gate failed"},
        ],
        "best": {"backend": "openvino", "precision": "bf16", "instances": 2, "threads_per_instance": 1},
    },
    "end_to_end": {"fps": 36.0},
    "fps_per_vcpu": {"cpus": 2, "bare_best": 28.0, "service": 20.0, "end_to_end": 18.0},
}


def test_a_bench_run_rewrites_its_class_and_the_sizing_follows(figures_copy, capsys):
    report = figures_copy.parent / "latest.json"
    report.write_text(json.dumps(AMD_ZEN4_RUN))
    before = sizing.for_node("c7a.xlarge")
    assert before.status == "estimate"
    assert sizing.main(["--record", str(report)]) == 0
    assert "amd-epyc-zen4 now measured" in capsys.readouterr().out
    entry = figures.load().cpu_class("amd-epyc-zen4")
    assert (entry.status, entry.date, entry.command, entry.vcpus, entry.serving) == (
        "measured",
        "2026-12-08",
        "make bench",
        2,
        "openvino bf16",
    )
    assert entry.fps_per_vcpu.bare == {"openvino bf16": 28.0, "onnxruntime f32": 15.0}, "int8 failed its gate"
    assert (entry.fps_per_vcpu.service, entry.fps_per_vcpu.end_to_end) == (20.0, 18.0)
    assert entry.priced_as == "c7a.xlarge" and entry.estimate is None
    after = sizing.for_node("c7a.xlarge")
    assert (after.status, after.inference_fps) == ("measured", 60.0)
    assert plan.plan(10, 5.0, "c7a.xlarge").status == "measured", "no longer refused"
    others = json.loads(figures.FIGURES_FILE.read_text())
    committed = json.loads((ROOT / "services/deploy/vidpipe_deploy/figures.json").read_text())
    assert {k: v for k, v in others["cpu_classes"].items() if k != "amd-epyc-zen4"} == {
        k: v for k, v in committed["cpu_classes"].items() if k != "amd-epyc-zen4"
    }, "only the run's class changes"


def test_a_run_whose_class_its_flags_do_not_say_needs_it_named(figures_copy, capsys):
    xeon = {**AMD_ZEN4_RUN, "machine": {"cpus": 16, "cpu_model": "Intel(R) Xeon(R) Processor", "bf16": "amx_bf16"}}
    xeon = {**xeon, "end_to_end": None, "fps_per_vcpu": {"cpus": 16, "service": 33.0}}
    report = figures_copy.parent / "device.json"
    report.write_text(json.dumps(xeon))
    assert sizing.main(["--record", str(report)]) == 1
    assert "--cpu-class" in capsys.readouterr().err
    assert sizing.main(["--record", str(report), "--cpu-class", "intel-xeon-sapphire-rapids"]) == 0
    entry = figures.load().cpu_class("intel-xeon-sapphire-rapids")
    assert entry.status == "measured" and entry.command == "python -m bench.run --no-kafka"
    assert entry.fps_per_vcpu.end_to_end is None and entry.fps_per_vcpu.service == 33.0
    assert "no broker" in (entry.measured_on or "")
    assert figures.classify({"cpu_model": "AMD EPYC", "avx512": False, "bf16": "none"}) == "amd-epyc-zen3"
    assert figures.classify({"cpu_model": "Intel(R) Xeon(R)", "avx512": True, "bf16": "none"}) == "intel-xeon-ice-lake"
