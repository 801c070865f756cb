"""bench.figures: the ratios, per-vCPU figures and targets a run derives, under the keys other code reads
(cdk8s sizing reads `fps_per_vcpu.cpus`, docs/PERFORMANCE.md's table the ratios and targets_met)."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import bench
from bench.figures import TARGETS, full_run, runtime_env, without_kafka

BEST = {"backend": "openvino", "precision": "bf16", "instances": 8, "threads_per_instance": 2}


def measured(cpus: int = 2) -> dict:
    """A full run's measured figures, (a) to (g), as bench.run collects them."""
    return {
        "machine": {"cpus": cpus, "cpu_limit": cpus},
        "bare": {
            "fps": 40.0,
            "ort_f32": {"fps": 20.0},
            "references": {"service": 40.0, "end_to_end": 32.0, "end_to_end_ort_f32": 16.0},
        },
        "service": {"fps": 36.0, "paired": {"ratio": 0.92}},
        "ceiling": {"fps": 400.0},
        "transport": {"fps": 900.0},
        "end_to_end": {"fps": 30.0},
        "naive": {"fps": 15.0},
        "overload": {
            "max_frame_age_ms": 2000,
            "latency_ms": {"p99": 1500.0},
            "memory": {"inference": {"growth_after_10s_mb": 2.0}, "consumer": {"growth_after_10s_mb": 11.0}},
        },
    }


def test_the_service_runs_the_bare_winner_as_environment_strings():
    assert runtime_env(BEST) == {
        "INFERENCE_BACKEND": "openvino",
        "INFERENCE_PRECISION": "bf16",
        "INFERENCE_INSTANCES": "8",
        "INFERENCE_INTRA_OP_THREADS": "2",
    }


def test_a_full_run_divides_by_the_adjacent_references_and_by_the_cgroup_cpus():
    derived = full_run(measured(cpus=2))
    assert list(derived) == ["ratios", "fps_per_vcpu", "targets", "targets_met"]
    ratios = derived["ratios"]
    assert ratios["service_vs_best_bare"] == 0.92, "from the back-to-back pairs"
    assert (ratios["e2e_vs_best_bare"], ratios["e2e_vs_ort_f32_bare"], ratios["e2e_vs_naive"]) == (0.938, 1.875, 2.0)
    assert (ratios["e2e_vs_best_bare_sweep"], ratios["ceiling_vs_best_bare"]) == (0.75, 10.0)
    assert derived["fps_per_vcpu"] == {
        "cpus": 2,
        "bare_best": 20.0,
        "bare_ort_f32": 10.0,
        "service": 18.0,
        "end_to_end": 15.0,
        "service_ceiling": 200.0,
    }
    assert derived["targets"] == TARGETS
    assert derived["targets_met"] == {
        "service_vs_best_bare": True,
        "e2e_vs_best_bare": True,
        "e2e_vs_ort_f32_bare": False,
        "e2e_vs_naive": True,
        "transport_fps_1000": False,
        "rss_flat_after_10s": False,  # the consumer grew 11 MB
        "overload_p99_within_max_age": True,
    }


@pytest.mark.parametrize(("cpus", "target"), [(2, 0.90), (16, 0.85)])
def test_a_run_without_kafka_has_its_target_by_machine_size(cpus, target):
    report = {
        "machine": {"cpu_limit": cpus},
        "bare": {"fps": 800.0, "ort_f32": {"fps": 160.0}, "references": {"ort_f32_after_pairs": 150.0}},
        "service": {
            "fps": 500.0,
            "paired": {
                "ratio": 0.87,
                "pairs": [{"service_fps": 450.0}, {"service_fps": 480.0}, {"service_fps": 520.0}],
            },
        },
    }
    derived = without_kafka(report)
    assert derived["ratios"]["service_vs_ort_f32_bare"] == 3.2, "the median pair against the old limit after them"
    assert derived["ratios"]["best_bare_vs_ort_f32_bare"] == 5.0
    assert derived["fps_per_vcpu"]["cpus"] == cpus and derived["fps_per_vcpu"]["service"] == round(500.0 / cpus, 2)
    assert derived["targets"] == {"service_vs_best_bare": target}
    assert derived["targets_met"] == {"service_vs_best_bare": 0.87 >= target}


def test_every_bench_module_imports():
    names = [m.name for m in pkgutil.walk_packages(bench.__path__, "bench.")]
    assert {"bench.run", "bench.bare", "bench.service", "bench.end_to_end", "bench.device.pack"} <= set(names)
    for name in names:
        importlib.import_module(name)
