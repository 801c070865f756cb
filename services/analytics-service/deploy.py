"""The analytics service's deploy unit: its identity and grants, its workload and its network policy.

One group member per replica, reading results as its own group, publishing events and showing archived
frames (read from S3 under the frames prefix only) in its live view. Replicas are a setting, not KEDA's:
the partition count bounds them, and a rebalance resets the trackers of the streams that move (recorded as
tracker_reset events).
"""

from __future__ import annotations

import hashlib

import yaml
from constructs import Construct

from cdk8s_app.network import https, kafka, network_policy, pod_identity, reads_token
from cdk8s_app.pods import cluster_ip_service, config_map, config_map_volume
from cdk8s_app.rooms import Room
from cdk8s_app.workloads import KAFKA_CONFIG, api_token_settings, unit_labels
from vidpipe_deploy.facts import FRAMES_PREFIX, GENERAL_POOL
from vidpipe_deploy.units import CONNECT, KAFKA_WHY, ObjectGrant, joins, reads, writes
from vidpipe_deploy.wiring import PlatformWiring

# The analytics service's streams file: a ConfigMap mounted read-only.
STREAMS_CONFIG = "analytics-streams"
STREAMS_DIR = "/etc/vidpipe/analytics"
STREAMS_KEY = "streams.yaml"
# The file's digest on the pod template: the service reads the file once, at start-up, so a changed file
# must replace the pods (kubelet would otherwise update the mounted file under a running process).
STREAMS_CHECKSUM_ANNOTATION = "vidpipe.io/analytics-streams-sha256"


class Analytics(Room):
    def add_workload(self, scope: Construct, wiring: PlatformWiring) -> None:
        labels = unit_labels(self)
        streams_file = streams_yaml(wiring)
        config_map(scope, STREAMS_CONFIG, {STREAMS_KEY: streams_file}, labels)
        volume, mount = config_map_volume("streams", STREAMS_CONFIG, STREAMS_DIR)
        config_map(
            scope,
            self.name,
            {
                "ANALYTICS_HOST": "0.0.0.0",
                "ANALYTICS_PORT": str(self.port),
                "ANALYTICS_OPS_PORT": str(self.health_port),
                "ANALYTICS_ARCHIVE_URI": wiring.archive_uri,  # the consumer's CONSUMER_ARCHIVE_URI
                "ANALYTICS_STREAMS_FILE": f"{STREAMS_DIR}/{STREAMS_KEY}",
                # The group its IAM grant names (below): the contract's, stated so the two cannot drift.
                "ANALYTICS_GROUP_ID": wiring.topics.analytics_group,
                "ANALYTICS_LOG_LEVEL": "info",
                "ANALYTICS_LOG_FORMAT": "json",  # one object per line, with the trace id, for the log pipeline
                "KAFKA_CLIENT_ID": self.name,
                # Overrides vidpipe-kafka (a later envFrom source wins): the publisher and consumer create the
                # topics, events included; this identity may not (its grants hold no CreateTopic).
                "TOPICS_CREATE": "false",
                **api_token_settings(wiring, self),
            },
            labels,
        )
        container = self.container(
            wiring,
            startup_seconds=120,
            resources=wiring.resources.analytics,
            config_maps=[KAFKA_CONFIG, self.name],
            ports={"http": self.port, "ops": self.health_port},
            mounts=[mount],
        )
        self.deploy(
            scope,
            wiring,
            container,
            tmp_size="256Mi",
            grace_seconds=30,  # ANALYTICS_SHUTDOWN_TIMEOUT_S (10 s) to deliver pending events, then commit
            replicas=wiring.scaling.analytics_replicas,
            volumes=[volume],
            pod_annotations={STREAMS_CHECKSUM_ANNOTATION: hashlib.sha256(streams_file.encode()).hexdigest()},
        )
        # `kubectl -n vidpipe port-forward svc/analytics 8082:8082` reaches the live view through this Service.
        cluster_ip_service(scope, f"{self.api_service}-svc", self.api_service, labels, "http", self.port)

    def add_network_policy(self, scope: Construct, wiring: PlatformWiring) -> None:
        """Egress to Kafka, HTTPS to S3 (archived frames) and the VPC's endpoints (token), and the Pod Identity
        agent; no ingress on its API port (its live view is reached with `kubectl port-forward`, which the
        kubelet delivers inside the pod, past NetworkPolicy, like the probes)."""
        network_policy(
            scope,
            self.name,
            unit_labels(self),
            egress=[kafka(wiring), *https(wiring, s3=True, aws_apis=reads_token(wiring, self)), pod_identity()],
        )


def streams_yaml(wiring: PlatformWiring) -> str:
    """The streams file as the analytics service reads it (vidpipe.analytics_config.load_streams_file)."""
    return yaml.safe_dump(wiring.analytics_streams_file, sort_keys=False, default_flow_style=None)


# Same port as the publishers' health server: they never share a pod.
UNIT = Analytics(
    role="analytics",
    component="analytics",
    port=8082,
    ops_port=8092,
    pool=GENERAL_POOL,
    service_name="analytics",
    api_token_variable="ANALYTICS_API_TOKEN",
    grants=(
        CONNECT,
        reads("ReadResults", "results"),
        writes("WriteEvents", "events"),
        joins("analytics_group"),
        ObjectGrant(sid="ReadArchivedFrames", actions=("s3:GetObject",), prefix=FRAMES_PREFIX),
    ),
    image_budget_mb=450,  # scipy and numpy are most of it, no OpenCV
    nag_reason=f"{KAFKA_WHY}; s3:GetObject only under {FRAMES_PREFIX}",
)
