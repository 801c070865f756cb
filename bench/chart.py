"""The chart beside the figures (bench/results/latest.png): throughput against both limits, and RSS under
overload."""

from __future__ import annotations

from pathlib import Path


def chart(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    bare, best, ort_f32 = report["bare"], report["bare"]["best"], report["bare"]["ort_f32"]
    names = ["inference\nservice", "end-to-end\n(backlog)", "end-to-end\n(live)", "naive"]
    values = [
        report["service"]["fps"],
        report["end_to_end"]["fps"],
        report["end_to_end"]["saturation"]["fps"],
        report["naive"]["fps"],
    ]
    bars = left.bar(names, values, color=["#3b75af", "#2e8b57", "#8fbc8f", "#c44e52"])
    left.bar_label(bars, fmt="%.1f")
    # Both limits: the best bare configuration of any backend, and the former one (onnxruntime f32, 1 instance).
    left.axhline(bare["fps"], color="#222222", linewidth=1.2, label=f"limit: bare {best['name']}: {bare['fps']:.1f}")
    left.axhline(
        ort_f32["fps"],
        color="#888888",
        linestyle="--",
        linewidth=1.2,
        label=f"old limit: bare onnxruntime f32, 1 instance: {ort_f32['fps']:.1f}",
    )
    left.set_ylim(0, max([*values, bare["fps"], ort_f32["fps"]]) * 1.25)
    left.legend(loc="upper right", fontsize=8)
    left.set_ylabel("frames per second")
    cpus = report["machine"].get("cpu_limit") or report["machine"].get("cpus")
    left.set_title(f"Throughput, default model, {cpus} vCPUs")
    for name, series in report["overload"]["rss_series"].items():
        right.plot([t for t, _ in series], [mb for _, mb in series], label=name)
    right.axvline(10, color="#999999", linestyle=":")
    right.set_xlabel("seconds at 3x capacity")
    right.set_ylabel("RSS (MB)")
    right.set_title("Memory under overload")
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
