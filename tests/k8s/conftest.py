"""Synthesize the cdk8s charts once per session (jsii start-up dominates) and share the objects."""

from __future__ import annotations

from typing import Any

import pytest

from tests.k8s.k8s_helpers import SAMPLE_OUTPUTS, SETTINGS, Manifests, synthesize


@pytest.fixture(scope="session")
def settings() -> dict[str, Any]:
    from vidpipe_deploy.wiring import load_settings

    return load_settings(SETTINGS)


@pytest.fixture(scope="session")
def wiring(settings):
    """The standalone path: the committed sample outputs, the committed settings, the test source on."""
    from vidpipe_deploy.wiring import PlatformWiring

    return PlatformWiring.from_outputs_file(SAMPLE_OUTPUTS, settings, rtsp_test_source={"enabled": True})


@pytest.fixture(scope="session")
def manifests(wiring) -> Manifests:
    return synthesize(wiring)
