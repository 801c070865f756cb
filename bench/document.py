"""docs/PERFORMANCE.md, and the cells both of its generated blocks render alike: the 2-vCPU run's table
(bench.report) and the many-core machine's (bench.device.report)."""

from __future__ import annotations

from tools.paths import ROOT

DOC = ROOT / "docs" / "PERFORMANCE.md"


def configuration(config: dict) -> str:
    """One sweep entry; a configuration measured but not eligible for the limit says why."""
    text = f"{config['name']}: {config['fps']} (batch {config['best_batch']})"
    return text + (f", not a candidate for the limit: {config['excluded']}" if config.get("excluded") else "")


CEILING_WHAT = "(g) the service ceiling: (b)'s settings with a model that costs nothing (`bench.null_model`)"


def ceiling(run: dict) -> str:
    """(g) as a cell: frames/s, its client setting, and the ratio to the bare limit."""
    top = run["ceiling"]
    best = top["best"]
    return (
        f"{top['fps']} frames/s ({best['endpoint']}, {best['concurrency']} clients), "
        f"{run['ratios']['ceiling_vs_best_bare']}x the bare limit"
    )


CEILING_PROCESSES_WHAT = (
    "(g) the service ceiling per process and with all processes: `INFERENCE_PROCESSES=1` against the "
    "processes the service starts by itself (one per CPU)"
)


def ceiling_processes(run: dict) -> str:
    """(g) with one serving process and with all of them, as a cell."""
    top = run["ceiling"]
    one = top["one_process"]
    return (
        f"1 process: {one['fps']} frames/s ({one['best']['endpoint']}, {one['best']['concurrency']} clients); "
        f"{top['processes']} processes: {top['fps']} frames/s ({top['best']['endpoint']}, "
        f"{top['best']['concurrency']} clients): {top['all_vs_one_process']}x"
    )
