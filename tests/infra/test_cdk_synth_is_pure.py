"""A synth is a function of the commit and its configuration: files a machine happens to hold (a local
`make bench` result, which git ignores) never change a template or a manifest.

The session's synth (conftest.py) and the charts synthesized here are compared with a fresh process's,
run while bench/results/latest.json holds figures no deployment would use.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.infra.cdk_support import ROOT, session_context

pytestmark = pytest.mark.infra

BENCH_FILE = ROOT / "bench" / "results" / "latest.json"
# Far from any documented figure: were it read, every lag threshold and the inference pod would change.
ODD_BENCH = {
    "machine": {"cpus": 2},
    "fps_per_vcpu": {"cpus": 2},
    "end_to_end": {"fps": 977.0},
    "service": {"fps": 1234.0},
    "bare": {"best": {"threads_per_instance": 1}},
}

_SYNTH = textwrap.dedent(
    """
    import json, os, sys
    import aws_cdk as cdk
    import cdk8s
    from cdk_app.app import build_platform
    from cdk8s_app.charts import build_platform_charts
    from cdk8s_app.main import wiring_from_env

    context, cdk_out, k8s_out = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
    app = cdk.App(context=context, outdir=cdk_out)
    platform = build_platform(app)
    app.synth()
    print(json.dumps({stack.stack_name: stack.artifact_id for stack in platform.stacks}))
    charts = cdk8s.App(outdir=k8s_out)
    build_platform_charts(charts, wiring_from_env())
    charts.synth()
    """
)


def _charts(outdir: Path) -> dict[str, str]:
    import cdk8s

    from cdk8s_app.charts import build_platform_charts
    from cdk8s_app.main import wiring_from_env

    app = cdk8s.App(outdir=str(outdir))
    build_platform_charts(app, wiring_from_env())
    app.synth()
    return {p.name: p.read_text() for p in sorted(outdir.glob("*.yaml"))}


@pytest.fixture
def odd_bench_file():
    """bench/results/latest.json with figures no one measured; a developer's own file is put back after."""
    saved = BENCH_FILE.read_bytes() if BENCH_FILE.exists() else None
    BENCH_FILE.parent.mkdir(parents=True, exist_ok=True)
    BENCH_FILE.write_text(json.dumps(ODD_BENCH))
    try:
        yield
    finally:
        if saved is None:
            BENCH_FILE.unlink(missing_ok=True)
        else:
            BENCH_FILE.write_bytes(saved)


def test_templates_and_manifests_ignore_a_local_bench_file(synth, tmp_path, tmp_path_factory, odd_bench_file):
    charts_here = _charts(tmp_path / "k8s-here")
    env = {k: v for k, v in os.environ.items() if k not in ("CDK_DEFAULT_ACCOUNT", "CDK_DEFAULT_REGION")}
    context = session_context(tmp_path_factory)
    done = subprocess.run(
        [sys.executable, "-c", _SYNTH, json.dumps(context), str(tmp_path / "cdk.out"), str(tmp_path / "k8s")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    artifacts = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(artifacts) == set(synth.templates)
    for stack, artifact in artifacts.items():
        template = json.loads((tmp_path / "cdk.out" / f"{artifact}.template.json").read_text())
        assert template == synth.templates[stack], f"{stack}: the template depends on a local bench file"
    charts_there = {p.name: p.read_text() for p in sorted((tmp_path / "k8s").glob("*.yaml"))}
    assert charts_there and charts_there == charts_here, "the manifests depend on a local bench file"
