"""Shared by the cdk8s tests: synthesize charts in-process and look objects up."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SAMPLE_OUTPUTS = ROOT / "cdk8s_app" / "sample-outputs.json"
SETTINGS = ROOT / "cdk8s_app" / "settings.yaml"


@dataclass
class Manifests:
    charts: dict[str, list[dict[str, Any]]]

    @property
    def objects(self) -> list[dict[str, Any]]:
        return [obj for objs in self.charts.values() for obj in objs]

    def kind(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind]

    def get(self, kind: str, name: str) -> dict[str, Any]:
        matches = [o for o in self.kind(kind) if o["metadata"]["name"] == name]
        assert matches, f"no {kind}/{name} among {[o['metadata']['name'] for o in self.kind(kind)]}"
        return matches[0]

    def config_map(self, name: str) -> dict[str, str]:
        return self.get("ConfigMap", name)["data"]


def synthesize(wiring) -> Manifests:
    import cdk8s

    from cdk8s_app.charts import build_platform_charts

    charts = build_platform_charts(cdk8s.App(), wiring)
    return Manifests({chart.node.id: list(chart.to_json()) for chart in charts.all()})


def containers(deployment: dict[str, Any]) -> list[dict[str, Any]]:
    return deployment["spec"]["template"]["spec"]["containers"]
