"""The service images as built by `make images` (from the CDK app's image assets), and the manifests
their pods run with (the cdk8s charts, synthesized in-process from the committed sample outputs)."""

from __future__ import annotations

import pytest

from tests.fixtures.pipeline import missing_setup
from tools.images.build import image_reference
from vidpipe_deploy.registry import FOLDERS

SERVICES = FOLDERS  # every deployed service has an image


@pytest.fixture(scope="session")
def podman():
    from tools.images.engine import EngineMissing, Podman

    try:
        engine = Podman()
    except EngineMissing as exc:
        missing_setup(str(exc))
    missing = [s for s in SERVICES if not engine.image_exists(image_reference(s))]
    if missing:
        missing_setup(f"images not built: {', '.join(missing)}: run `make images` (make test does it)")
    return engine


@pytest.fixture(scope="session")
def pod_manifests() -> list[dict]:
    from tests.k8s.k8s_helpers import SAMPLE_OUTPUTS, SETTINGS, synthesize
    from vidpipe_deploy.wiring import PlatformWiring, load_settings

    return synthesize(PlatformWiring.from_outputs_file(SAMPLE_OUTPUTS, load_settings(SETTINGS))).objects
