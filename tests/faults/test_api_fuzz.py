"""Schemathesis generates requests from the inference service's own OpenAPI document and sends
them to the real server process: nothing may produce a 5xx, and every error is JSON naming the
problem. (Driven through schemathesis' schema API with Hypothesis: its pytest plugin does not
work with pytest 9.) The document comes from the service's code (the server does not publish it
unless INFERENCE_OPENAPI is set)."""

import cv2
import numpy as np
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inference_service.app import create_app
from inference_service.settings import InferenceSettings
from tests.hostile_images import CORPUS
from vidpipe.contract import BATCH_CONTENT_TYPE, encode_batch

pytestmark = [pytest.mark.model, pytest.mark.faults]

_IMAGE = np.zeros((48, 64, 3), np.uint8)
_IMAGE[10:30, 10:50] = (0, 128, 255)
REAL_JPEG = cv2.imencode(".jpg", _IMAGE)[1].tobytes()
# Real, truncated, bit-flipped and random images: what cameras and bugs actually send; and the hostile
# corpus (dimension bombs declaring up to 40000x40000 as JPEG and PNG, corrupt and truncated files).
images = st.one_of(
    st.just(REAL_JPEG),
    st.sampled_from([data for data, _, _ in CORPUS.values()]),
    st.integers(2, len(REAL_JPEG) - 1).map(lambda n: REAL_JPEG[:n]),
    st.tuples(st.integers(0, len(REAL_JPEG) - 1), st.integers(1, 255)).map(
        lambda p: REAL_JPEG[: p[0]] + bytes([REAL_JPEG[p[0]] ^ p[1]]) + REAL_JPEG[p[0] + 1 :]
    ),
    st.binary(max_size=2048),
)
schemathesis.openapi.media_type("image/jpeg", images)
schemathesis.openapi.media_type("image/png", images)
schemathesis.openapi.media_type(
    BATCH_CONTENT_TYPE,
    st.one_of(
        st.lists(images, min_size=1, max_size=6).map(encode_batch),  # well framed
        st.binary(max_size=4096),  # framing garbage
    ),
)


def operations():
    document = create_app(InferenceSettings(model_uri="unused.onnx", openapi=True), token=None).openapi()
    schema = schemathesis.openapi.from_dict(document)
    return [result.ok() for result in schema.get_all_operations()]


def test_no_input_makes_the_service_fail(inference_url):
    checked = []
    for operation in operations():

        @given(case=operation.as_strategy())
        @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def no_server_error(case):
            response = case.call(base_url=inference_url)
            assert response.status_code < 500, (case.method, case.path, response.status_code, response.text[:300])
            if response.status_code >= 400:
                error = response.json()["error"]
                assert error["code"] and error["message"], response.text

        no_server_error()
        checked.append(f"{operation.method.upper()} {operation.path}")
    assert {"POST /v1/infer", "POST /v1/infer/batch", "GET /v1/model"} <= set(checked)
