"""Schemathesis generates requests from the inference service's own OpenAPI document and sends
them to the real server process: nothing may produce a 5xx, and every error is JSON naming the
problem."""
import pytest
import schemathesis
from hypothesis import HealthCheck, settings

pytestmark = [pytest.mark.model, pytest.mark.faults]


@pytest.fixture(scope="module")
def inference_api(inference_url):
    return schemathesis.openapi.from_url(f"{inference_url}/openapi.json")


schema = schemathesis.pytest.from_fixture("inference_api")


@schema.parametrize()
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_input_makes_the_service_fail(case):
    response = case.call()
    assert response.status_code < 500, (response.status_code, response.text[:300])
    if response.status_code >= 400:
        error = response.json()["error"]
        assert error["code"] and error["message"], response.text
