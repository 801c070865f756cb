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


def device_run(cpus: int, ratio: float, met: bool) -> dict:
    best = {"name": "openvino bf16, 8 instance(s) x 2 thread(s)", "best_batch": 2, "fps": 640.0}
    ort = {"name": "onnxruntime f32, 1 instance(s) x 16 thread(s)", "best_batch": 16, "fps": 140.0}
    return {
        "label": f"{cpus} vCPU",
        "started": "2026-11-27T10:00:00Z",
        "machine": {"cpus": 16, "cpu_limit": cpus, "cpu_model": "Intel Xeon", "bf16": "amx_bf16, avx512_bf16"},
        "runtimes": {"onnxruntime": "1.30.0", "openvino": "2026.4.1", "openvino_cpu_capabilities": ["FP32", "BF16"]},
        "affinity": {
            "allowed_cpus": cpus,
            "busy_processes": 2 * cpus,
            "cpu_seconds_per_second": cpus,
            "enforced": True,
        },
        "bare": {"fps": 640.0, "best": best, "ort_f32": ort, "configurations": [best, ort], "skipped": []},
        "service": {
            "fps": 600.0,
            "best": {"endpoint": "/v1/infer/batch", "concurrency": 3},
            "paired": {"pairs": [{"service_fps": 590.0}, {"service_fps": 600.0}, {"service_fps": 610.0}]},
        },
        "ratios": {"service_vs_best_bare": ratio, "service_vs_ort_f32_bare": 4.2, "best_bare_vs_ort_f32_bare": 4.57},
        "fps_per_vcpu": {"bare_best": 40.0, "bare_ort_f32": 8.75, "service": 37.5},
        "targets_met": {"service_vs_best_bare": met},
        "service_auto": {
            "backend": "openvino",
            "precision": "bf16",
            "instances": cpus // 2,
            "threads_per_instance": 2,
            "cpu_limit": cpus,
            "precision_reason": "auto: CPU has amx_bf16",
        },
    }


def test_device_block_is_separate_and_labelled():
    from bench.device.report import DEVICE_BEGIN, DEVICE_END, render_device

    doc = f"# Performance\n{BEGIN}\nthe 2-vCPU table\n{END}\nmiddle\n{DEVICE_BEGIN}\nnone yet\n{DEVICE_END}\nend\n"
    gate = {
        "precision": "bf16",
        "asked_precision": "bf16",
        "backend": "openvino 2026.4.1",
        "f1": 0.976,
        "kept": 339,
        "reference_detections": 347,
        "added": 9,
        "score_diff_mean": 0.008,
        "score_diff_max": 0.043,
        "frames": 250,
        "min_f1": 0.97,
        "passed": True,
    }
    runs = {"all": device_run(16, 0.91, True), "pair": device_run(2, 0.87, False)}
    machine_txt = "--- lscpu\nModel name:   Intel(R) Xeon(R) Platinum 8480+\n"
    out = render_device(doc, runs, {"bf16_vs_openvino_f32": {"exit_code": 0, "report": gate}}, machine_txt)
    assert f"{BEGIN}\nthe 2-vCPU table\n{END}\nmiddle\n" in out and out.endswith(f"{DEVICE_END}\nend\n")
    assert "none yet" not in out
    assert "**16-vCPU machine**, run of 2026-11-27: Intel(R) Xeon(R) Platinum 8480+;" in out
    assert (
        "| (a) bare, best configuration of the sweep (the limit) | 640.0 frames/s: openvino bf16, 8 instance(s)" in out
    )
    assert "| 0.91 (service 600.0 frames/s, 3 pairs) | 0.87 (service 600.0 frames/s, 3 pairs) |" in out
    assert "16 vCPUs >= 0.85: met; 2 vCPUs >= 0.9: **not met** |" in out
    assert "F1 0.976, kept 339 of 347, added 9, score difference mean 0.008, max 0.043 (250 frames)" in out
    assert "| OpenVINO f32 against onnxruntime f32, bikes.mp4 | not measured" in out
    assert render_device(out, runs, None, machine_txt).count(DEVICE_BEGIN) == 1


def test_device_block_survives_a_run_cut_short():
    from bench.device.report import device_table

    cut = {"label": "2 vCPU", "machine": {"cpu_limit": 2}, "error": "Traceback ...\nKeyboardInterrupt: signal 15"}
    table = device_table({"all": device_run(16, 0.9, True), "pair": cut}, None)
    assert "| not measured: KeyboardInterrupt: signal 15 |" in table


def test_the_service_ceiling_row_appears_when_measured():
    from bench.device.report import device_table

    measured = report()
    measured["ceiling"] = {"fps": 702.5, "best": {"endpoint": "/v1/infer/batch", "concurrency": 3}}
    measured["ratios"]["ceiling_vs_best_bare"] = 22.52
    measured["fps_per_vcpu"]["service_ceiling"] = 351.25
    out = render(f"{BEGIN}\n{END}\n", measured)
    assert "| 702.5 frames/s (/v1/infer/batch, 3 clients), 22.52x the bare limit |" in out
    assert ", service ceiling 351.25 |" in out
    assert "service ceiling" not in render(f"{BEGIN}\n{END}\n", report()), "older runs have no such row"
    big = device_run(16, 0.56, False) | {"ceiling": measured["ceiling"]}
    big["ratios"] = big["ratios"] | {"ceiling_vs_best_bare": 1.1}
    table = device_table({"all": big, "pair": device_run(2, 0.9, True)}, None)
    assert "| 702.5 frames/s (/v1/infer/batch, 3 clients), 1.1x the bare limit | not measured |" in table
    assert "service ceiling" not in device_table({"all": device_run(16, 0.56, False), "pair": None}, None)
