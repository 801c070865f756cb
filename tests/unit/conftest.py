"""Fixtures shared by the unit tests."""

from __future__ import annotations

import pytest

from tests.helpers import started_client


@pytest.fixture
def serve():
    """Start inference apps on given models (serve(path, **settings)); all are stopped afterwards."""
    from inference_service.settings import InferenceSettings

    clients = []

    def _serve(path, **overrides):
        client = started_client(InferenceSettings(model_uri=str(path), **overrides), ready=False)
        clients.append(client)
        return client

    yield _serve
    for client in clients:
        client.__exit__(None, None, None)
