"""The consumer's deploy unit: its identity and grants, its workload, its network policy and its scaling.

A group member reading frames: it calls the inference service, writes results and dead letters, archives
frames and results to S3 (under the archive prefix only), and scales with KEDA on the group's lag on the
frames topic, never beyond the partitions that have lag.
"""

from __future__ import annotations

from constructs import Construct

from cdk8s_app.autoscaling import Autoscaling
from cdk8s_app.network import https, kafka, network_policy, pod_identity, reads_token, to_unit
from cdk8s_app.pods import config_map
from cdk8s_app.rooms import Room
from cdk8s_app.workloads import KAFKA_CONFIG, api_token_settings, unit_labels
from vidpipe_deploy.facts import ARCHIVE_PREFIX, GENERAL_POOL
from vidpipe_deploy.units import CONNECT, CREATE_TOPICS, KAFKA_WHY, ObjectGrant, joins, reads, writes
from vidpipe_deploy.wiring import PlatformWiring


class Consumer(Room):
    def add_workload(self, scope: Construct, wiring: PlatformWiring) -> None:
        labels = unit_labels(self)
        inference = wiring.services.inference
        config_map(
            scope,
            self.name,
            {
                "CONSUMER_INFERENCE_URL": f"http://{inference.api_service}.{wiring.namespace}.svc:{inference.port}",
                "CONSUMER_ARCHIVE_URI": wiring.archive_uri,
                "CONSUMER_GROUP_ID": wiring.consumer_group,
                "CONSUMER_HEALTH_PORT": str(self.port),
                "CONSUMER_MAX_FRAME_AGE_MS": str(wiring.consumer_max_frame_age_ms),
                "CONSUMER_DEAD_LETTER_PAYLOAD": wiring.dead_letters.payload,
                "CONSUMER_LOG_LEVEL": "info",
                "CONSUMER_LOG_FORMAT": "json",  # one object per line, with the trace id, for the log pipeline
                "KAFKA_CLIENT_ID": self.name,
                **api_token_settings(wiring, self),
            },
            labels,
        )
        container = self.container(
            wiring,
            startup_seconds=120,
            resources=wiring.resources.consumer,
            config_maps=[KAFKA_CONFIG, self.name],
            ports={"health": self.health_port},
        )
        # CONSUMER_SHUTDOWN_TIMEOUT_S (30 s) to finish and commit in-flight batches; replicas: KEDA's.
        self.deploy(scope, wiring, container, tmp_size="256Mi", grace_seconds=45)

    def add_network_policy(self, scope: Construct, wiring: PlatformWiring) -> None:
        """Egress to the inference API port, Kafka, HTTPS to S3 (archive) and the VPC's endpoints (token), and
        the Pod Identity agent."""
        network_policy(
            scope,
            self.name,
            unit_labels(self),
            egress=[
                to_unit(wiring.services.inference),
                kafka(wiring),
                *https(wiring, s3=True, aws_apis=reads_token(wiring, self)),
                pod_identity(),
            ],
        )

    def add_scaling(self, scope: Autoscaling, wiring: PlatformWiring) -> None:
        """Replicas beyond the partitions with lag would sit idle (limitToPartitionsWithLag)."""
        s = wiring.scaling
        scope.frames_lag(
            self.name, s.consumer_min_replicas, wiring.consumer_max_replicas, s.consumer_lag_threshold, True
        )


UNIT = Consumer(
    role="consumer",
    component="consumer",
    port=8081,
    pool=GENERAL_POOL,
    api_token_variable="CONSUMER_INFERENCE_TOKEN",  # sends it to inference
    grants=(
        CONNECT,
        CREATE_TOPICS,
        reads("ReadFrames", "frames"),
        writes("WriteResultsAndDeadLetters", "results", "dead_letter"),
        joins("consumer_group"),
        ObjectGrant(sid="PutArchive", actions=("s3:PutObject",), prefix=ARCHIVE_PREFIX),
    ),
    nag_reason=f"{KAFKA_WHY}; s3:PutObject only under {ARCHIVE_PREFIX}",
)
