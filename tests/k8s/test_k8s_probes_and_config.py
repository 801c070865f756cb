"""Probes hit paths and ports the services really serve; ConfigMaps set only variables the services
read, with values the services' own settings classes accept."""

from __future__ import annotations

import http.client
import re

import pytest

from tests.k8s.k8s_helpers import ROOT, containers, env_of, probe_targets

pytestmark = pytest.mark.infra

# Variables that are not the services' own settings but are read by libraries they use.
LIBRARY_VARIABLES = {"AWS_REGION", "OPENCV_FFMPEG_CAPTURE_OPTIONS"}


def documented_variables() -> set[str]:
    text = (ROOT / "env.example").read_text()
    return set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", text, flags=re.M))


@pytest.fixture(scope="module")
def health_server_paths():
    """Ask the consumer/publisher health server itself which of the probe paths it answers."""
    from prometheus_client import CollectorRegistry

    from vidpipe.health import Heartbeat, serve_health

    server = serve_health(0, Heartbeat(stale_after_s=60), CollectorRegistry(), host="127.0.0.1")
    try:
        port = server.server_address[1]
        answered = set()
        for path in ("/healthz", "/readyz", "/metrics", "/nonexistent"):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", path)
            if conn.getresponse().status != 404:
                answered.add(path)
            conn.close()
        return answered
    finally:
        server.shutdown()
        server.server_close()


def asgi_status(app, path: str) -> int:
    """The status an ASGI app answers a GET of `path` with (no server, no socket)."""
    import asyncio

    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [(b"host", b"10.0.0.1")],
        "client": ("10.0.0.2", 40000),
        "server": ("10.0.0.1", 8090),
    }
    asyncio.run(app(scope, receive, send))
    return next(m["status"] for m in sent if m["type"] == "http.response.start")


def test_inference_probes_hit_the_ops_app_on_the_ops_port(manifests):
    """Probes go to INFERENCE_OPS_PORT, which serves the ops app (/healthz, /readyz, /metrics); the API port
    is only the API's."""
    from inference_service.app import create_app, create_ops_app
    from inference_service.settings import InferenceSettings

    ops = create_ops_app(create_app(InferenceSettings(model_uri="unused.onnx")).state.service)
    deployment = manifests.get("Deployment", "inference-service")
    container = containers(deployment)[0]
    env = env_of(manifests, deployment)
    api, ops_port = int(env["INFERENCE_PORT"]), int(env["INFERENCE_OPS_PORT"])
    assert (api, ops_port) == (8080, 8090)
    assert container["ports"] == [
        {"containerPort": api, "name": "http", "protocol": "TCP"},
        {"containerPort": ops_port, "name": "ops", "protocol": "TCP"},
    ]
    targets = probe_targets(container)
    assert targets["readinessProbe"] == ("/readyz", ops_port), "ready only once the model is loaded"
    for path, probe_port in targets.values():
        assert probe_port == ops_port
        assert asgi_status(ops, path) != 404, path
    assert asgi_status(ops, "/metrics") == 200
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(ops_port) and annotations["prometheus.io/path"] == "/metrics"


def test_every_service_is_scraped_on_its_health_port(manifests, wiring):
    """Prometheus (annotations) and the probes use the same port: the ops port where there is one."""
    names = ["inference-service", "consumer-service", "analytics-service", "frame-publisher"]
    for name in names:
        deployment = manifests.get("Deployment", name)
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true", name
        ports = {port for _, port in probe_targets(containers(deployment)[0]).values()}
        assert ports == {int(annotations["prometheus.io/port"])}, name


@pytest.mark.parametrize("kind", ["consumer", "publisher"])
def test_kafka_side_probes_hit_the_health_server(manifests, wiring, health_server_paths, kind):
    assert health_server_paths == {"/healthz", "/readyz", "/metrics"}
    if kind == "consumer":
        deployments, variable = [manifests.get("Deployment", "consumer-service")], "CONSUMER_HEALTH_PORT"
    else:
        deployments = [manifests.get("Deployment", "frame-publisher")]
        variable = "PUBLISHER_HEALTH_PORT"
    for deployment in deployments:
        port = int(env_of(manifests, deployment)[variable])
        assert port > 0, f"{variable}=0 would switch the health server off"
        for path, probe_port in probe_targets(containers(deployment)[0]).values():
            assert path in health_server_paths and probe_port == port


def _config_map_uses(manifests) -> tuple[set[str], set[str]]:
    """ConfigMaps read as variables (envFrom) and as files (volumes), by Deployments and Jobs."""
    as_env, as_files = set(), set()
    for deployment in [*manifests.kind("Deployment"), *manifests.kind("Job")]:
        pod = deployment["spec"]["template"]["spec"]
        as_files |= {v["configMap"]["name"] for v in pod["volumes"] if "configMap" in v}
        for container in pod["containers"]:
            as_env |= {s["configMapRef"]["name"] for s in container.get("envFrom", [])}
    return as_env, as_files


def test_config_maps_set_only_variables_the_services_read(manifests):
    known = documented_variables() | LIBRARY_VARIABLES
    as_env, as_files = _config_map_uses(manifests)
    assert not as_env & as_files, "a ConfigMap is either variables or files"
    for config_map in manifests.kind("ConfigMap"):
        name = config_map["metadata"]["name"]
        assert name in as_env | as_files, f"{name}: used by no Deployment or Job"
        if name in as_env:
            unknown = set(config_map["data"]) - known
            assert not unknown, f"{name}: {sorted(unknown)} not in env.example"


def test_service_settings_accept_the_config_maps(manifests, wiring, monkeypatch):
    """Each service's own settings classes parse its environment: a typo'd value fails here, not in a pod."""
    from consumer_service.settings import ConsumerSettings
    from frame_publisher.settings import PublisherSettings
    from inference_service.settings import InferenceSettings
    from vidpipe.kafka import KafkaSettings
    from vidpipe.topics import TopicSettings

    cases = [
        ("inference-service", [InferenceSettings]),
        ("consumer-service", [KafkaSettings, TopicSettings, ConsumerSettings]),
        ("frame-publisher", [KafkaSettings, TopicSettings, PublisherSettings]),
    ]
    for name, classes in cases:
        env = env_of(manifests, manifests.get("Deployment", name))
        with monkeypatch.context() as patch:
            for key in list(__import__("os").environ):
                if key.split("_")[0] in {"KAFKA", "TOPICS", "CONSUMER", "PUBLISHER", "INFERENCE"}:
                    patch.delenv(key)
            for key, value in env.items():
                patch.setenv(key, value)
            for cls in classes:
                cls()  # raises ValidationError naming the variable


def test_the_model_digest_from_the_outputs_pins_the_inference_model(tmp_path, settings):
    """ModelSha256 (the CDK app's output) becomes INFERENCE_MODEL_SHA256; without it there is no pin."""
    import json

    from tests.k8s.k8s_helpers import SAMPLE_OUTPUTS, synthesize
    from vidpipe_deploy.wiring import PlatformWiring

    document = json.loads(SAMPLE_OUTPUTS.read_text())
    assert "INFERENCE_MODEL_SHA256" not in synthesize(
        PlatformWiring.from_outputs_file(SAMPLE_OUTPUTS, settings)
    ).config_map("inference-service")
    digest = "ab" * 32
    document["VidpipeCompute"]["ModelSha256"] = digest
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps(document))
    manifests = synthesize(PlatformWiring.from_outputs_file(outputs, settings))
    assert manifests.config_map("inference-service")["INFERENCE_MODEL_SHA256"] == digest


def test_consumer_reaches_inference_through_its_service(manifests, wiring):
    service = manifests.get("Service", "inference")
    url = manifests.config_map("consumer-service")["CONSUMER_INFERENCE_URL"]
    assert url == f"http://inference.{wiring.namespace}.svc:{service['spec']['ports'][0]['port']}"
    selector = service["spec"]["selector"]
    labels = manifests.get("Deployment", "inference-service")["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= labels.items()
