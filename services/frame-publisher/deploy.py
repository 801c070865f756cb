"""The frame publishers' deploy unit: their identity and grants, one workload and one network policy per
stream.

A publisher reads one camera and writes frames; it creates missing topics. The source URL never appears in
a manifest: the publisher reads it from the stream's Secret, mounted as a file (PUBLISHER_SOURCE_FILE), or
from AWS Secrets Manager (PUBLISHER_SOURCE_SECRET_ARN, an ARN, not a secret). The only exception is the
in-cluster test source, whose fixed URL holds no credentials.
"""

from __future__ import annotations

from cdk8s_plus_36 import k8s
from constructs import Construct

from cdk8s_app.network import ANYWHERE, cidr, https, kafka, network_policy, pod_identity, pods, tcp
from cdk8s_app.pods import app_labels, config_map, secret_volume
from cdk8s_app.rooms import Room
from cdk8s_app.workloads import KAFKA_CONFIG, RTSP_PORT, TEST_SOURCE_LABELS, number
from vidpipe_deploy.facts import GENERAL_POOL, PUBLISHER_PREFIX, StreamSpec
from vidpipe_deploy.units import CONNECT, CREATE_TOPICS, KAFKA_WHY, writes
from vidpipe_deploy.wiring import PlatformWiring

# A publisher's camera URL: its Secret's key mounted as a file (PUBLISHER_SOURCE_FILE), never an env variable.
SOURCE_DIR = "/etc/vidpipe/source"
SOURCE_FILE = "url"


class Publisher(Room):
    def labels(self, stream: StreamSpec) -> dict[str, str]:
        return app_labels(self.name, self.component, instance=stream.name)

    def add_workload(self, scope: Construct, wiring: PlatformWiring) -> None:
        for stream in wiring.all_streams:
            self._stream(scope, wiring, stream)

    def _stream(self, scope: Construct, wiring: PlatformWiring, stream: StreamSpec) -> None:
        labels, name = self.labels(stream), publisher_name(stream)
        settings = {
            "PUBLISHER_STREAM_ID": stream.name,
            "PUBLISHER_TARGET_FPS": number(stream.target_fps),
            "PUBLISHER_HEALTH_PORT": str(self.health_port),
            "PUBLISHER_PROGRESS": "false",
            "PUBLISHER_LOG_LEVEL": "info",
            "PUBLISHER_LOG_FORMAT": "json",  # one object per line, with the trace id, for the log pipeline
            "KAFKA_CLIENT_ID": name,
            # RTP interleaved in the RTSP TCP connection: one known port for the NetworkPolicy, no UDP.
            # (FFmpeg ignores the option for other protocols.)
            "OPENCV_FFMPEG_CAPTURE_OPTIONS": "rtsp_transport;tcp",
        }
        env: dict[str, str] = {}
        volumes, mounts = [], []
        if wiring.is_test_stream(stream):
            env["PUBLISHER_SOURCE"] = wiring.test_source_url
        elif stream.source_secret_arn:
            settings["PUBLISHER_SOURCE_SECRET_ARN"] = stream.source_secret_arn
        else:
            volume, mount = secret_volume("source", stream.secret, stream.secret_key, SOURCE_DIR, SOURCE_FILE)
            volumes.append(volume)
            mounts.append(mount)
            settings["PUBLISHER_SOURCE_FILE"] = f"{SOURCE_DIR}/{SOURCE_FILE}"
        config_map(scope, name, settings, labels)
        container = self.container(
            wiring,
            startup_seconds=60,
            resources=wiring.resources.publisher,
            config_maps=[KAFKA_CONFIG, name],
            ports={"health": self.health_port},
            env=env,
            mounts=mounts,
        )
        self.deploy(
            scope,
            wiring,
            container,
            name=name,
            labels=labels,
            service_account=stream.service_account,
            tmp_size="64Mi",
            grace_seconds=40,  # PUBLISHER_FLUSH_TIMEOUT_S (30 s) to deliver pending frames
            replicas=1,
            recreate=True,  # two publishers of one stream would publish every frame twice
            volumes=volumes,
            budget=False,
        )

    def add_network_policy(self, scope: Construct, wiring: PlatformWiring) -> None:
        """Egress to Kafka, the stream source's port and the Pod Identity agent; HTTPS to the VPC's endpoints
        when the source URL is read from AWS Secrets Manager (source_secret_arn). No S3."""
        for stream in wiring.all_streams:
            network_policy(
                scope,
                publisher_name(stream),
                self.labels(stream),
                egress=[
                    kafka(wiring),
                    pod_identity(),
                    *source(wiring, stream),
                    *https(wiring, aws_apis=stream.source_secret_arn is not None),  # Secrets Manager
                ],
            )


def publisher_name(stream: StreamSpec) -> str:
    return PUBLISHER_PREFIX + stream.name


def source(wiring: PlatformWiring, stream: StreamSpec) -> list[k8s.NetworkPolicyEgressRule]:
    """Egress to the camera: the in-cluster test source by pod label, anything else by its port."""
    if wiring.is_test_stream(stream):
        return [k8s.NetworkPolicyEgressRule(to=[pods(TEST_SOURCE_LABELS)], ports=tcp(RTSP_PORT))]
    return [k8s.NetworkPolicyEgressRule(to=[cidr(ANYWHERE)], ports=tcp(stream.port))]


UNIT = Publisher(
    role="publisher",
    component="publisher",
    port=8082,
    pool=GENERAL_POOL,
    grants=(
        CONNECT,
        CREATE_TOPICS,
        writes("WriteFrames", "frames"),
    ),
    # 396 MB before tracing; OpenTelemetry's SDK and OTLP/HTTP exporter (with protobuf and requests) add
    # about 9 MB unpacked: the default 400 MB no longer fits.
    image_budget_mb=410,
    nag_reason=KAFKA_WHY,
)
