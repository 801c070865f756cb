"""Standalone synth: `npx cdk8s synth` (cdk8s.yaml) or `python -m cdk8s_app.main` -> dist/*.k8s.yaml.

VIDPIPE_OUTPUTS_FILE: `cdk deploy --outputs-file` JSON (default: the committed fake sample).
VIDPIPE_K8S_SETTINGS: streams, test source and scaling knobs (default cdk8s_app/settings.yaml).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import cdk8s

from cdk8s_app.charts import build_platform_charts
from vidpipe_deploy.wiring import PlatformWiring, WiringError, load_settings

ROOT = Path(__file__).resolve().parent.parent

HERE = Path(__file__).resolve().parent
DEFAULT_OUTPUTS = HERE / "sample-outputs.json"
DEFAULT_SETTINGS = HERE / "settings.yaml"


def wiring_from_env() -> PlatformWiring:
    outputs = os.environ.get("VIDPIPE_OUTPUTS_FILE") or DEFAULT_OUTPUTS
    settings = load_settings(os.environ.get("VIDPIPE_K8S_SETTINGS") or DEFAULT_SETTINGS)
    return PlatformWiring.from_outputs_file(outputs, settings)


def main() -> int:
    try:
        wiring = wiring_from_env()
    except WiringError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    # cdk8s CLI passes its output folder in CDK8S_OUTDIR; default dist/ at the repository root.
    app = cdk8s.App(outdir=os.environ.get("CDK8S_OUTDIR") or str(ROOT / "dist"))
    build_platform_charts(app, wiring)
    app.synth()
    return 0


if __name__ == "__main__":
    sys.exit(main())
