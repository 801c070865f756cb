"""Summarize the cdk-nag result of a synthesized cloud assembly: `python -m cdk_app.nag_report cdk.out`.

Unacknowledged findings come from validation-report.json (synth fails on them); acknowledgements
from each stack's metadata (aws:cdk:acknowledged-rules). Exit code 1 when anything is unacknowledged.
"""

from __future__ import annotations

import json
import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ACK_METADATA = "aws:cdk:acknowledged-rules"
RULE_PACK = "AwsSolutions-"


@dataclass
class NagSummary:
    unacknowledged: list[tuple[str, str]] = field(default_factory=list)  # (finding, construct path)
    acknowledged: list[tuple[str, str, str]] = field(default_factory=list)  # (finding, construct path, reason)

    def by_rule(self) -> Counter[str]:
        """Acknowledged findings per rule (granular ids folded: AwsSolutions-IAM5[...] -> AwsSolutions-IAM5)."""
        return Counter(re.sub(r"\[.*\]$", "", finding) for finding, _, _ in self.acknowledged)


def summarize(assembly: Path) -> NagSummary:
    summary = NagSummary()
    report = assembly / "validation-report.json"
    if report.exists():
        for plugin in json.loads(report.read_text()).get("pluginReports", []):
            for violation in plugin.get("violations", []):
                for construct in violation.get("violatingConstructs", []):
                    summary.unacknowledged.append((violation["ruleName"], construct["constructPath"]))
    for metadata in sorted(assembly.glob("*.metadata.json")):
        for path, entries in json.loads(metadata.read_text()).items():
            for entry in entries:
                if entry.get("type") == ACK_METADATA:
                    for finding, reason in (entry.get("data") or {}).items():
                        # CDK files its own (non-nag) acknowledgements here too, e.g. CloudFormation-Validate::F3002.
                        finding = finding.removeprefix("Annotation::")
                        if finding.startswith(RULE_PACK):
                            summary.acknowledged.append((finding, path, reason))
    return summary


def main(argv: list[str]) -> int:
    assembly = Path(argv[1] if len(argv) > 1 else "cdk.out")
    summary = summarize(assembly)
    print(
        f"cdk-nag AwsSolutions: {len(summary.unacknowledged)} unacknowledged, "
        f"{len(summary.acknowledged)} acknowledged finding(s) in {assembly}"
    )
    for rule, count in sorted(summary.by_rule().items()):
        print(f"  {rule:<22} {count:>3} acknowledged")
    for finding, path in summary.unacknowledged:
        print(f"  UNACKNOWLEDGED {finding} at {path}")
    return 1 if summary.unacknowledged else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
