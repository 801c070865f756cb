"""docs/PERFORMANCE.md's figures are rendered from a bench run's latest.json, never typed by hand."""

from __future__ import annotations

from bench.report import BEGIN, DOC, END, render


def report() -> dict:
    latency = {"p50": 120.0, "p95": 180.0, "p99": 230.0, "p100": 300.0}
    return {
        "bare": {
            "fps": 31.2,
            "best": {"name": "openvino f32, 2 instance(s) x 1 thread(s)", "best_batch": 4, "fps": 31.2},
            "ort_f32": {"name": "onnxruntime f32, 1 instance(s) x 2 thread(s)", "best_batch": 8, "fps": 24.0},
            "configurations": [
                {"name": "onnxruntime f32, 1 instance(s) x 2 thread(s)", "best_batch": 8, "fps": 24.0},
                {"name": "openvino f32, 2 instance(s) x 1 thread(s)", "best_batch": 4, "fps": 31.2},
            ],
            "skipped": ["bf16: not supported by this CPU"],
        },
        "service": {"fps": 28.0},
        "transport": {"fps": 1100.0, "mb_per_s": 170.0},
        "end_to_end": {
            "fps": 27.5,
            "saturation": {"fps": 28.1, "latency_ms": latency},
            "at_70_percent": {"offered_fps": 19.3, "latency_ms": latency},
        },
        "naive": {"fps": 22.0},
        "overload": {
            "seconds": 60,
            "offered_fps": 82.5,
            "max_frame_age_ms": 2000,
            "frames_with_results": 1500,
            "latency_ms": latency,
            "memory": {"inference": {"growth_after_10s_mb": 0.4, "peak_mb": 330.0}},
        },
        "ratios": {
            "service_vs_best_bare": 0.93,
            "e2e_vs_best_bare": 0.88,
            "e2e_vs_ort_f32_bare": 1.15,
            "e2e_vs_naive": 1.25,
        },
        "fps_per_vcpu": {"cpus": 2, "bare_best": 15.6, "bare_ort_f32": 12.0, "service": 14.0, "end_to_end": 13.75},
        "targets_met": {
            "service_vs_best_bare": True,
            "e2e_vs_best_bare": True,
            "e2e_vs_ort_f32_bare": False,
            "e2e_vs_naive": False,
            "transport_fps_1000": True,
            "rss_flat_after_10s": True,
            "overload_p99_within_max_age": True,
        },
        "machine": {"cpus": 2},
    }


def test_the_committed_document_has_the_generated_block():
    text = DOC.read_text()
    assert text.count(BEGIN) == 1 and text.count(END) == 1


def test_render_replaces_only_the_figures():
    doc = f"# Performance\nintro\n{BEGIN}\nstale table\n{END}\nnarrative\n"
    out = render(doc, report())
    assert "stale table" not in out and out.startswith("# Performance\nintro\n") and out.endswith("narrative\n")
    assert (
        "| (a) bare, best configuration of the backend sweep (the limit) | 31.2 frames/s: openvino f32, "
        "2 instance(s) x 1 thread(s), batch 4 |" in out
    )
    assert "| (a) bare onnxruntime f32, 1 instance, best batch size (the old limit) | 24.0 frames/s (batch 8) |" in out
    assert "(batch 4); bf16: not supported by this CPU |" in out
    assert "| (d) the same against the old limit: `e2e_vs_ort_f32_bare` | 1.15 | >= 2.5: **not met** |" in out
    assert "bare best 15.6, bare onnxruntime f32 12.0, service 14.0, end-to-end 13.75 |" in out
    assert "0.93 (best 28.0 frames/s) | >= 0.90: met" in out
    assert "-> 1.25 | >= 1.5: **not met**" in out
    assert render(out, report()) == out  # idempotent
