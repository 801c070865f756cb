"""Render the fault suite's accounts (out/faults/*.json, written by the tests) as docs/RELIABILITY.md's
Reliability table: python -m tools.harness.faults_report."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tools.paths import ROOT

REPORT_DIR = ROOT / "out" / "faults"
ORDER = [
    "consumer SIGKILL",
    "broker restart",
    "inference down 20 s",
    "rebalance",
    "poison records",
    "SIGTERM consumer",
    "SIGTERM publisher",
    "SIGTERM inference",
]  # then the hostile records, by name


def rows(report_dir: Path = REPORT_DIR) -> list[dict]:
    found = [json.loads(p.read_text()) for p in sorted(report_dir.glob("*.json"))]
    rank = {name: i for i, name in enumerate(ORDER)}
    return sorted(found, key=lambda r: (rank.get(r["fault"], len(ORDER)), r["fault"]))


def markdown(table: list[dict]) -> str:
    lines = [
        "| fault | what the pipeline does | frames published | frames with results | duplicates |",
        "|---|---|---:|---:|---:|",
    ]
    for row in table:
        published = str(row["frames_published"])
        if "dead_lettered" in row:
            published += f" (+{row['dead_lettered']} dead-lettered)"
        lines.append(
            f"| {row['fault']} | {row['behaviour']} | {published} | {row['frames_with_results']} | "
            f"{row['duplicates']} |"
        )
    return "\n".join(lines)


def main() -> int:
    table = rows()
    if not table:
        print(f"no fault accounts in {REPORT_DIR}: run `make faults` first", file=sys.stderr)
        return 1
    print(markdown(table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
