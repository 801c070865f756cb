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


SECRET_STAND_IN = "rtsp://user:pass@camera.example.internal/from-a-secret"


def env_of(manifests, deployment: dict, container: str = None) -> dict[str, str]:
    spec = next(c for c in containers(deployment) if container in (None, c["name"]))
    env: dict[str, str] = {}
    for source in spec.get("envFrom", []):
        env.update(manifests.config_map(source["configMapRef"]["name"]))
    for entry in spec.get("env", []):
        # A value from a Secret (a publisher's PUBLISHER_SOURCE) is not in the manifest: stand in for it.
        env[entry["name"]] = entry["value"] if "value" in entry else SECRET_STAND_IN
    return env


def probe_targets(container: dict) -> dict[str, tuple[str, int]]:
    return {
        kind: (container[kind]["httpGet"]["path"], container[kind]["httpGet"]["port"])
        for kind in ("startupProbe", "readinessProbe", "livenessProbe")
    }
