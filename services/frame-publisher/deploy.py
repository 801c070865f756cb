"""The frame publishers' deploy unit: one Deployment whatever the number of cameras, its identity and grants,
its network policy and its scaling rule.

Every publisher pod is a member of one consumer group on the stream registry topic (PUBLISHER_MODE=registry) and
carries the enabled streams of the registry partitions it is assigned; a stream added, changed or removed in
the registry starts, restarts or stops within a second, without a deploy (docs/STREAMS.md). Sources are
references, never URLs with credentials: `secret:<key>` is a key of the camera Secret, mounted read-only as
files (the kubelet keeps them current, and a source is read again at each reconnect); a Secrets Manager ARN is
read with the pod's own identity. KEDA keeps one pod per `scaling.publisher_streams_per_pod` enabled streams, at
least two, at most one per registry partition.
"""

from __future__ import annotations

from cdk8s_plus_36 import k8s
from constructs import Construct

from cdk8s_app.autoscaling import Autoscaling
from cdk8s_app.network import ANYWHERE, cidr, https, kafka, network_policy, pod_identity, pods, tcp
from cdk8s_app.pods import config_map, secret_dir_volume
from cdk8s_app.rooms import Room
from cdk8s_app.workloads import KAFKA_CONFIG, RTSP_PORT, TEST_SOURCE_LABELS, number, unit_labels
from vidpipe_deploy.facts import CAMERA_SECRET, CAMERA_SOURCES_DIR, GENERAL_POOL
from vidpipe_deploy.units import CONNECT, CREATE_TOPICS, KAFKA_WHY, joins, reads, writes
from vidpipe_deploy.wiring import PlatformWiring

# PUBLISHER_FLUSH_TIMEOUT_S: how long a stopping pod waits for the broker to take its streams' pending frames.
FLUSH_TIMEOUT_S = 30
# The pod's grace: the flush, then writing each stream's `stopped` status and leaving the group.
GRACE_SECONDS = FLUSH_TIMEOUT_S + 10
# The analytics service's count of the registry's streams, on its ops port: {"enabled": N, "total": M}.
STREAMS_COUNT_PATH = "/streams/count"


class Publisher(Room):
    def add_workload(self, scope: Construct, wiring: PlatformWiring) -> None:
        labels = unit_labels(self)
        config_map(
            scope,
            self.name,
            {
                "PUBLISHER_MODE": "registry",
                # The group its IAM grant names (below): stated so the two cannot drift.
                "PUBLISHER_GROUP_ID": wiring.topics.publisher_group,
                "PUBLISHER_SOURCES_DIR": CAMERA_SOURCES_DIR,
                "PUBLISHER_FLUSH_TIMEOUT_S": number(FLUSH_TIMEOUT_S),
                "PUBLISHER_HEALTH_PORT": str(self.health_port),
                "PUBLISHER_PROGRESS": "false",
                "PUBLISHER_LOG_LEVEL": "info",
                "PUBLISHER_LOG_FORMAT": "json",  # one object per line, with the trace id, for the log pipeline
                "KAFKA_CLIENT_ID": self.name,
                # RTP interleaved in the RTSP TCP connection: known ports for the NetworkPolicy, no UDP.
                # (FFmpeg ignores the option for other protocols.)
                "OPENCV_FFMPEG_CAPTURE_OPTIONS": "rtsp_transport;tcp",
            },
            labels,
        )
        # Optional: the pods start before the Secret exists, and a key added later is picked up at the stream's
        # next retry (a stream whose key is missing fails alone, with its reason in its status).
        volume, mount = secret_dir_volume("camera-sources", CAMERA_SECRET, CAMERA_SOURCES_DIR)
        container = self.container(
            wiring,
            startup_seconds=60,
            resources=wiring.resources.publisher,
            config_maps=[KAFKA_CONFIG, self.name],
            ports={"health": self.health_port},
            mounts=[mount],
        )
        # Replicas: KEDA's. A rolling update adds the new pod to the group before the old one leaves it.
        self.deploy(scope, wiring, container, tmp_size="64Mi", grace_seconds=GRACE_SECONDS, volumes=[volume])

    def add_network_policy(self, scope: Construct, wiring: PlatformWiring) -> None:
        """Egress to Kafka, the cameras (camera_ports at any address outside the cluster, instance metadata
        excepted; the in-cluster test source by its pods) and the Pod Identity agent; HTTPS to the VPC's endpoints
        only when a camera URL is read from Secrets Manager. No S3, no ingress but the scrapers'."""
        network_policy(
            scope,
            self.name,
            unit_labels(self),
            egress=[
                kafka(wiring),
                pod_identity(),
                *cameras(wiring),
                *https(wiring, aws_apis=bool(wiring.camera_secrets_manager_arns)),
            ],
        )

    def add_scaling(self, scope: Autoscaling, wiring: PlatformWiring) -> None:
        """One pod per publisher_streams_per_pod enabled streams, counted by the analytics service (which follows
        the whole registry): at least publisher_min_replicas, so one pod lost never stops every camera, at most the
        registry's partitions, beyond which a pod is assigned nothing."""
        analytics = wiring.services.analytics
        s = wiring.scaling
        scope.metrics_api(
            self.name,
            s.publisher_min_replicas,
            wiring.publisher_max_replicas,
            name="enabled-streams",
            url=f"http://{analytics.api_service}.{wiring.namespace}.svc:{analytics.health_port}{STREAMS_COUNT_PATH}",
            value_location="enabled",
            target_value=s.publisher_streams_per_pod,
        )


def cameras(wiring: PlatformWiring) -> list[k8s.NetworkPolicyEgressRule]:
    """The cameras' ports anywhere but instance metadata (the URLs, and so the hosts, are never known here);
    the in-cluster test source by its pods' labels."""
    rules = [k8s.NetworkPolicyEgressRule(to=[cidr(ANYWHERE)], ports=tcp(*wiring.camera_ports))]
    if wiring.rtsp_test_source.enabled:
        rules.append(k8s.NetworkPolicyEgressRule(to=[pods(TEST_SOURCE_LABELS)], ports=tcp(RTSP_PORT)))
    return rules


UNIT = Publisher(
    role="publisher",
    component="publisher",
    port=8082,
    pool=GENERAL_POOL,
    grants=(
        CONNECT,
        CREATE_TOPICS,
        reads("ReadStreams", "streams"),
        joins("publisher_group"),
        writes("WriteFramesAndStatuses", "frames", "streams_status"),
    ),
    # 396 MB before tracing; OpenTelemetry's SDK and OTLP/HTTP exporter (with protobuf and requests) add
    # about 9 MB unpacked: the default 400 MB no longer fits.
    image_budget_mb=410,
    nag_reason=KAFKA_WHY,
)
