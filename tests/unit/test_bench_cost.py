"""The bench's cost row: this run's service frames/s per vCPU on the node its CPU class is priced as, with the
planner's committed layout and prices."""

from bench.cost import inference_cost
from bench.report import _publisher_and_cost_rows
from vidpipe_deploy import figures, sizing


def test_the_cost_per_camera_hour_follows_the_runs_figure_and_the_committed_price():
    machine = {"cpu_model": "AMD EPYC 9R14", "bf16": "avx512_bf16", "avx512": True}
    cost = inference_cost({"machine": machine, "fps_per_vcpu": {"service": 20.0}})
    node = figures.load().cpu_class("amd-epyc-zen4").priced_as
    pod = sizing.for_node(node, cpu_class="amd-epyc-zen4")
    expected = figures.prices().ec2(node) * 5.0 / (pod.cpu_request_m / 1000 * 20.0)
    assert cost["node_type"] == node and abs(cost["usd_per_camera_hour"] - expected) < 1e-5
    doubled = inference_cost({"machine": machine, "fps_per_vcpu": {"service": 40.0}})
    assert abs(doubled["usd_per_camera_hour"] * 2 - cost["usd_per_camera_hour"]) < 1e-4
    rows = _publisher_and_cost_rows({"inference_cost": cost})
    assert rows and rows[0][1].startswith(f"${cost['usd_per_camera_hour']}")


def test_an_unclassified_machine_gets_a_reason_not_a_figure():
    cost = inference_cost({"machine": {"cpu_model": "Intel Xeon", "bf16": "amx_bf16"}, "fps_per_vcpu": {"service": 9}})
    assert "usd_per_camera_hour" not in cost and cost["reason"]
    assert _publisher_and_cost_rows({"inference_cost": cost}) == []
