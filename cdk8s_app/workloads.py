"""The workloads: the Kafka client ConfigMap every service reads, each service's Deployments, ConfigMaps,
Services and PDBs (rendered by its room, services/<folder>/deploy.py) and the optional RTSP test source; and
the run-once Jobs the rooms render in a chart of their own (the registry seed).

Every variable set here or in a room is one the services read (env.example); ConfigMaps reach the
containers through envFrom, so a setting is changed in one place.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from cdk8s_plus_36 import k8s
from constructs import Construct

from vidpipe_deploy.units import ServiceUnit
from vidpipe_deploy.wiring import PlatformWiring, Resources

from .pods import (
    ASSET_IMAGE_CHECKOV_SKIPS,
    ContainerSpec,
    app_labels,
    checkov_skip_annotations,
    cluster_ip_service,
    config_map,
    deployment,
    secret_volume,
)

# Names, ports and pools of the services come from their units (units.py, via wiring.services).
TEST_SOURCE_NAME = "rtsp-test-source"
RTSP_PORT = 8554

KAFKA_CONFIG = "vidpipe-kafka"
# The services' own images (CDK assets, immutable tags): checkov's reasoned suppressions on their Deployments.
ASSET_IMAGE_ANNOTATIONS = checkov_skip_annotations(ASSET_IMAGE_CHECKOV_SKIPS)
TEST_SOURCE_LABELS = app_labels(TEST_SOURCE_NAME, "test-source")
# Without Secrets Manager, the API token is this file, from the Kubernetes Secret api_token_secret_name.
API_TOKEN_DIR = "/var/run/vidpipe/api-token"
API_TOKEN_KEY = "token"
API_TOKEN_FILE = f"{API_TOKEN_DIR}/{API_TOKEN_KEY}"


def unit_labels(unit: ServiceUnit) -> dict[str, str]:
    return app_labels(unit.name, unit.component)


def kafka_settings(wiring: PlatformWiring) -> dict[str, str]:
    """KAFKA_* and TOPICS_* for the Kafka clients (env.example)."""
    return {
        "KAFKA_BOOTSTRAP": wiring.kafka_bootstrap,
        "KAFKA_AUTH": wiring.kafka_auth,
        "KAFKA_TLS": str(wiring.kafka_tls).lower(),
        "KAFKA_AWS_REGION": wiring.region,
        "AWS_REGION": wiring.region,
        "TOPICS_FRAMES": wiring.topics.frames,
        "TOPICS_RESULTS": wiring.topics.results,
        "TOPICS_DEAD_LETTER": wiring.topics.dead_letter,
        "TOPICS_EVENTS": wiring.topics.events,
        "TOPICS_PARTITIONS": str(wiring.topic_partitions),
        "TOPICS_STREAMS": wiring.topics.streams,
        "TOPICS_STREAMS_PARTITIONS": str(wiring.topics.streams_partitions),
        "TOPICS_STREAMS_STATUS": wiring.topics.streams_status,
        "TOPICS_CREATE": str(wiring.topics_create).lower(),
        # Read where a topic is created (publisher and consumer: TOPICS_CREATE); an existing topic keeps its own.
        "TOPICS_DEAD_LETTER_RETENTION_HOURS": number(wiring.dead_letters.retention_hours),
    }


def api_token_settings(wiring: PlatformWiring, unit: ServiceUnit) -> dict[str, str]:
    """<stem>_SECRET_ARN for a unit that checks or sends the API token, when the deployment has its secret
    (an ARN, not the token: the service reads the value itself, with its own identity); else <stem>_FILE when the
    token is a Kubernetes Secret mounted as a file (api_token_volume)."""
    if not unit.api_token_variable:
        return {}
    if wiring.api_token_secret_arn:
        return {f"{unit.api_token_variable}_SECRET_ARN": wiring.api_token_secret_arn}
    if wiring.api_token_file_secret:
        return {f"{unit.api_token_variable}_FILE": API_TOKEN_FILE}
    return {}


def api_token_volume(wiring: PlatformWiring) -> tuple[k8s.Volume, k8s.VolumeMount] | None:
    """The API token's Kubernetes Secret as the file API_TOKEN_FILE, when there is no Secrets Manager ARN."""
    secret = wiring.api_token_file_secret
    if secret is None:
        return None
    return secret_volume("api-token", secret, API_TOKEN_KEY, API_TOKEN_DIR, API_TOKEN_KEY)


class HasWorkload(Protocol):
    def add_workload(self, scope: Construct, wiring: PlatformWiring) -> None: ...


class HasJobs(Protocol):
    def add_jobs(self, scope: Construct, wiring: PlatformWiring) -> None: ...


class Workloads(Construct):
    """All Deployments of the platform in one namespace: each room's, then the test source."""

    def __init__(self, scope: Construct, id: str, wiring: PlatformWiring, rooms: Sequence[HasWorkload] = ()) -> None:
        super().__init__(scope, id)
        self.wiring = wiring
        config_map(self, KAFKA_CONFIG, kafka_settings(wiring), app_labels("vidpipe", "config"))
        for room in rooms:
            room.add_workload(self, wiring)
        if wiring.rtsp_test_source.enabled:
            self._test_source()

    def _test_source(self) -> None:
        w, labels, test = self.wiring, TEST_SOURCE_LABELS, self.wiring.rtsp_test_source
        if test.video_url:
            source = ["-re", "-stream_loop", "-1", "-i", test.video_url]
        else:
            source = ["-re", "-f", "lavfi", "-i", f"testsrc2=size=1280x720:rate={test.fps}"]
        ffmpeg = [
            "ffmpeg",
            "-hide_banner",
            "-loglevel",
            "warning",
            *source,
            "-an",
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-tune",
            "zerolatency",
            "-g",
            str(test.fps * 2),
            "-f",
            "rtsp",
            "-rtsp_transport",
            "tcp",
            f"rtsp://127.0.0.1:{RTSP_PORT}/{test.path}",
        ]
        small = Resources(cpu_request="100m", cpu_limit="500m", memory_request="64Mi", memory_limit="256Mi")
        encoder = Resources(cpu_request="250m", cpu_limit="1", memory_request="128Mi", memory_limit="512Mi")
        deployment(
            self,
            TEST_SOURCE_NAME,
            labels,
            [
                ContainerSpec(
                    name="mediamtx",
                    image=test.image,
                    resources=small,
                    config_maps=[],
                    ports={"rtsp": RTSP_PORT},
                    probes=None,
                    tcp_ready_port=RTSP_PORT,
                    command=["/mediamtx"],
                    # Only RTSP over TCP; the other listeners are not needed in the cluster.
                    env={
                        "MTX_RTMP": "no",
                        "MTX_HLS": "no",
                        "MTX_WEBRTC": "no",
                        "MTX_SRT": "no",
                        "MTX_RTSPTRANSPORTS": "tcp",
                        "MTX_API": "no",
                        "MTX_METRICS": "no",
                    },
                ),
                # ffmpeg retries by restarting the pod's container when mediamtx is not up yet.
                ContainerSpec(
                    name="loop",
                    image=test.image,
                    resources=encoder,
                    config_maps=[],
                    ports={},
                    probes=None,
                    command=ffmpeg[:1],
                    args=ffmpeg[1:],
                ),
            ],
            service_account=None,
            tmp_size="64Mi",
            grace_seconds=10,
            node_selector=w.node_selectors.general,
            replicas=1,
            recreate=True,
        )
        cluster_ip_service(self, f"{TEST_SOURCE_NAME}-svc", w.test_source_service, labels, "rtsp", RTSP_PORT)


class Jobs(Construct):
    """The rooms' run-once Jobs (and what only they use). A chart of their own: on the CDK path its manifest is
    applied again only when it changes, so a Job the cluster deleted after it finished is not created again by
    an unrelated change to the workloads."""

    def __init__(self, scope: Construct, id: str, wiring: PlatformWiring, rooms: Sequence[HasJobs] = ()) -> None:
        super().__init__(scope, id)
        for room in rooms:
            room.add_jobs(self, wiring)


def number(value: float) -> str:
    """A setting's number as the services parse it: no ".0" on whole numbers."""
    return str(int(value)) if float(value).is_integer() else str(value)
