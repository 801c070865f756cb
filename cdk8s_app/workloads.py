"""The four services (and the optional RTSP test source) as Deployments, ConfigMaps, Services, PDBs.

Every variable set here is one the services read (env.example); ConfigMaps reach the containers
through envFrom, so a setting is changed in one place.
"""

from __future__ import annotations

import hashlib

import yaml
from constructs import Construct

from vidpipe_deploy.units import ServiceUnit

from .pods import (
    ASSET_IMAGE_CHECKOV_SKIPS,
    ContainerSpec,
    HealthProbes,
    app_labels,
    checkov_skip_annotations,
    cluster_ip_service,
    config_map,
    config_map_volume,
    deployment,
    disruption_budget,
    prometheus_annotations,
    secret_volume,
)
from .wiring import PUBLISHER_PREFIX, PlatformWiring, Resources, StreamSpec

# Names, ports and pools of the services come from their units (units.py, via wiring.services).
TEST_SOURCE_NAME = "rtsp-test-source"
RTSP_PORT = 8554
# The inference service is reached by the consumer through this Service name.
INFERENCE_SERVICE = "inference"
MODEL_CACHE_DIR = "/tmp/vidpipe-models"
# `kubectl -n vidpipe port-forward svc/analytics 8082:8082` reaches the live view through this Service.
ANALYTICS_SERVICE = "analytics"
# The analytics service's streams file: a ConfigMap mounted read-only.
ANALYTICS_STREAMS_CONFIG = "analytics-streams"
ANALYTICS_STREAMS_DIR = "/etc/vidpipe/analytics"
ANALYTICS_STREAMS_KEY = "streams.yaml"
# The file's digest on the pod template: the service reads the file once, at start-up, so a changed file
# must replace the pods (kubelet would otherwise update the mounted file under a running process).
STREAMS_CHECKSUM_ANNOTATION = "vidpipe.io/analytics-streams-sha256"

KAFKA_CONFIG = "vidpipe-kafka"
# A publisher's camera URL: its Secret's key mounted as a file (PUBLISHER_SOURCE_FILE), never an env variable.
SOURCE_DIR = "/etc/vidpipe/source"
SOURCE_FILE = "url"
# The services' own images (CDK assets, immutable tags): checkov's reasoned suppressions on their Deployments.
ASSET_IMAGE_ANNOTATIONS = checkov_skip_annotations(ASSET_IMAGE_CHECKOV_SKIPS)
TEST_SOURCE_LABELS = app_labels(TEST_SOURCE_NAME, "test-source")


def unit_labels(unit: ServiceUnit) -> dict[str, str]:
    return app_labels(unit.name, unit.component)


def publisher_labels(wiring: PlatformWiring, stream: StreamSpec) -> dict[str, str]:
    publisher = wiring.services.publisher
    return app_labels(publisher.name, publisher.component, instance=stream.name)


def publisher_name(stream: StreamSpec) -> str:
    return PUBLISHER_PREFIX + stream.name


def inference_url(wiring: PlatformWiring) -> str:
    return f"http://{INFERENCE_SERVICE}.{wiring.namespace}.svc:{wiring.services.inference.port}"


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
        "TOPICS_CREATE": str(wiring.topics_create).lower(),
        # Read where a topic is created (publisher and consumer: TOPICS_CREATE); an existing topic keeps its own.
        "TOPICS_DEAD_LETTER_RETENTION_HOURS": _number(wiring.dead_letters.retention_hours),
    }


def api_token_settings(wiring: PlatformWiring, unit: ServiceUnit) -> dict[str, str]:
    """<stem>_SECRET_ARN for a unit that checks or sends the API token, when the deployment has its secret
    (an ARN, not the token: the service reads the value itself, with its own identity)."""
    if not (wiring.api_token_secret_arn and unit.api_token_variable):
        return {}
    return {f"{unit.api_token_variable}_SECRET_ARN": wiring.api_token_secret_arn}


class Workloads(Construct):
    """All Deployments of the platform in one namespace."""

    def __init__(self, scope: Construct, id: str, wiring: PlatformWiring) -> None:
        super().__init__(scope, id)
        self.wiring = wiring
        config_map(self, KAFKA_CONFIG, kafka_settings(wiring), app_labels("vidpipe", "config"))
        self._inference()
        self._consumer()
        self._analytics()
        for stream in wiring.all_streams:
            self._publisher(stream)
        if wiring.rtsp_test_source.enabled:
            self._test_source()

    def _inference(self) -> None:
        w = self.wiring
        unit = w.services.inference
        labels = unit_labels(unit)
        config_map(
            self,
            unit.name,
            {
                "INFERENCE_MODEL_URI": w.model_uri,
                "INFERENCE_MODEL_CACHE_DIR": MODEL_CACHE_DIR,
                **({"INFERENCE_MODEL_SHA256": w.model_sha256} if w.model_sha256 else {}),
                "INFERENCE_HOST": "0.0.0.0",
                "INFERENCE_PORT": str(unit.port),
                "INFERENCE_OPS_PORT": str(unit.health_port),
                "INFERENCE_INSTANCES": str(w.resources.inference_instances),
                "INFERENCE_INTRA_OP_THREADS": str(w.resources.inference_threads),
                "INFERENCE_LOG_LEVEL": "info",
                "AWS_REGION": w.region,
                **api_token_settings(w, unit),
            },
            labels,
        )
        deployment(
            self,
            unit.name,
            labels,
            [
                ContainerSpec(
                    name="inference",
                    image=w.images.inference,
                    resources=w.resources.inference,
                    config_maps=[unit.name],
                    ports={"http": unit.port, "ops": unit.health_port},
                    # The model downloads from S3 before /readyz turns 200: allow minutes, not seconds.
                    probes=HealthProbes(port=unit.health_port, startup_seconds=300),
                )
            ],
            service_account=w.service_account(unit.role),
            tmp_size="1Gi",  # the model cache lives under /tmp
            grace_seconds=40,  # uvicorn drains in-flight requests for up to 30 s
            node_selector=w.node_selectors.pool(unit.pool),
            automount_token=w.automount_service_account_token,
            pod_annotations=prometheus_annotations(unit.health_port),
            annotations=ASSET_IMAGE_ANNOTATIONS,
        )
        cluster_ip_service(self, f"{INFERENCE_SERVICE}-svc", INFERENCE_SERVICE, labels, "http", unit.port)
        disruption_budget(self, unit.name, labels)

    def _consumer(self) -> None:
        w = self.wiring
        unit = w.services.consumer
        labels = unit_labels(unit)
        config_map(
            self,
            unit.name,
            {
                "CONSUMER_INFERENCE_URL": inference_url(w),
                "CONSUMER_ARCHIVE_URI": w.archive_uri,
                "CONSUMER_GROUP_ID": w.consumer_group,
                "CONSUMER_HEALTH_PORT": str(unit.port),
                "CONSUMER_MAX_FRAME_AGE_MS": str(w.consumer_max_frame_age_ms),
                "CONSUMER_DEAD_LETTER_PAYLOAD": w.dead_letters.payload,
                "CONSUMER_LOG_LEVEL": "info",
                "KAFKA_CLIENT_ID": unit.name,
                **api_token_settings(w, unit),
            },
            labels,
        )
        deployment(
            self,
            unit.name,
            labels,
            [
                ContainerSpec(
                    name="consumer",
                    image=w.images.consumer,
                    resources=w.resources.consumer,
                    config_maps=[KAFKA_CONFIG, unit.name],
                    ports={"health": unit.health_port},
                    probes=HealthProbes(port=unit.health_port, startup_seconds=120),
                )
            ],
            service_account=w.service_account(unit.role),
            automount_token=w.automount_service_account_token,
            tmp_size="256Mi",
            grace_seconds=45,  # CONSUMER_SHUTDOWN_TIMEOUT_S (30 s) to finish and commit in-flight batches
            node_selector=w.node_selectors.pool(unit.pool),
            pod_annotations=prometheus_annotations(unit.health_port),
            annotations=ASSET_IMAGE_ANNOTATIONS,
        )
        disruption_budget(self, unit.name, labels)

    def _analytics(self) -> None:
        """One group member per replica, reading results and the archived frames the live view shows.

        Replicas are a setting, not KEDA's: the partition count bounds them, and a rebalance resets the
        trackers of the streams that move (recorded as tracker_reset events).
        """
        w = self.wiring
        unit = w.services.analytics
        labels = unit_labels(unit)
        streams_file = analytics_streams_yaml(w)
        config_map(self, ANALYTICS_STREAMS_CONFIG, {ANALYTICS_STREAMS_KEY: streams_file}, labels)
        volume, mount = config_map_volume("streams", ANALYTICS_STREAMS_CONFIG, ANALYTICS_STREAMS_DIR)
        config_map(
            self,
            unit.name,
            {
                "ANALYTICS_HOST": "0.0.0.0",
                "ANALYTICS_PORT": str(unit.port),
                "ANALYTICS_OPS_PORT": str(unit.health_port),
                "ANALYTICS_ARCHIVE_URI": w.archive_uri,  # the consumer's CONSUMER_ARCHIVE_URI
                "ANALYTICS_STREAMS_FILE": f"{ANALYTICS_STREAMS_DIR}/{ANALYTICS_STREAMS_KEY}",
                # The group its IAM grant names (units.py): the contract's, stated so the two cannot drift.
                "ANALYTICS_GROUP_ID": w.topics.analytics_group,
                "ANALYTICS_LOG_LEVEL": "info",
                "KAFKA_CLIENT_ID": unit.name,
                # Overrides vidpipe-kafka (a later envFrom source wins): the publisher and consumer create the
                # topics, events included; this identity may not (units.py grants it no CreateTopic).
                "TOPICS_CREATE": "false",
                **api_token_settings(w, unit),
            },
            labels,
        )
        deployment(
            self,
            unit.name,
            labels,
            [
                ContainerSpec(
                    name="analytics",
                    image=w.images.analytics,
                    resources=w.resources.analytics,
                    config_maps=[KAFKA_CONFIG, unit.name],
                    ports={"http": unit.port, "ops": unit.health_port},
                    probes=HealthProbes(port=unit.health_port, startup_seconds=120),
                    mounts=[mount],
                )
            ],
            service_account=w.service_account(unit.role),
            automount_token=w.automount_service_account_token,
            tmp_size="256Mi",
            grace_seconds=30,  # ANALYTICS_SHUTDOWN_TIMEOUT_S (10 s) to deliver pending events, then commit
            node_selector=w.node_selectors.pool(unit.pool),
            replicas=w.scaling.analytics_replicas,
            volumes=[volume],
            pod_annotations={
                STREAMS_CHECKSUM_ANNOTATION: hashlib.sha256(streams_file.encode()).hexdigest(),
                **prometheus_annotations(unit.health_port),
            },
            annotations=ASSET_IMAGE_ANNOTATIONS,
        )
        cluster_ip_service(self, f"{ANALYTICS_SERVICE}-svc", ANALYTICS_SERVICE, labels, "http", unit.port)
        disruption_budget(self, unit.name, labels)

    def _publisher(self, stream: StreamSpec) -> None:
        """The source URL never appears here: the publisher reads it from the stream's Secret, mounted as a file
        (PUBLISHER_SOURCE_FILE; the URL is in no variable, so not in the process environment either), or from
        AWS Secrets Manager (PUBLISHER_SOURCE_SECRET_ARN, an ARN, not a secret). The only exception is the
        in-cluster test source, whose fixed URL holds no credentials."""
        w, labels, name = self.wiring, publisher_labels(self.wiring, stream), publisher_name(stream)
        unit = w.services.publisher
        settings = {
            "PUBLISHER_STREAM_ID": stream.name,
            "PUBLISHER_TARGET_FPS": _number(stream.target_fps),
            "PUBLISHER_HEALTH_PORT": str(unit.health_port),
            "PUBLISHER_PROGRESS": "false",
            "PUBLISHER_LOG_LEVEL": "info",
            "KAFKA_CLIENT_ID": name,
            # RTP interleaved in the RTSP TCP connection: one known port for the NetworkPolicy, no UDP.
            # (FFmpeg ignores the option for other protocols.)
            "OPENCV_FFMPEG_CAPTURE_OPTIONS": "rtsp_transport;tcp",
        }
        env: dict[str, str] = {}
        volumes, mounts = [], []
        if w.is_test_stream(stream):
            env["PUBLISHER_SOURCE"] = w.test_source_url
        elif stream.source_secret_arn:
            settings["PUBLISHER_SOURCE_SECRET_ARN"] = stream.source_secret_arn
        else:
            volume, mount = secret_volume("source", stream.secret, stream.secret_key, SOURCE_DIR, SOURCE_FILE)
            volumes.append(volume)
            mounts.append(mount)
            settings["PUBLISHER_SOURCE_FILE"] = f"{SOURCE_DIR}/{SOURCE_FILE}"
        config_map(self, name, settings, labels)
        deployment(
            self,
            name,
            labels,
            [
                ContainerSpec(
                    name="publisher",
                    image=w.images.publisher,
                    resources=w.resources.publisher,
                    config_maps=[KAFKA_CONFIG, name],
                    ports={"health": unit.health_port},
                    probes=HealthProbes(port=unit.health_port, startup_seconds=60),
                    env=env,
                    mounts=mounts,
                )
            ],
            service_account=stream.service_account or w.service_account(unit.role),
            automount_token=w.automount_service_account_token,
            tmp_size="64Mi",
            grace_seconds=40,  # PUBLISHER_FLUSH_TIMEOUT_S (30 s) to deliver pending frames
            node_selector=w.node_selectors.pool(unit.pool),
            replicas=1,
            recreate=True,  # two publishers of one stream would publish every frame twice
            volumes=volumes,
            pod_annotations=prometheus_annotations(unit.health_port),
            annotations=ASSET_IMAGE_ANNOTATIONS,
        )

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


def analytics_streams_yaml(wiring: PlatformWiring) -> str:
    """The streams file as the analytics service reads it (vidpipe.analytics_config.load_streams_file)."""
    return yaml.safe_dump(wiring.analytics_streams_file, sort_keys=False, default_flow_style=None)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)
