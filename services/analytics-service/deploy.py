"""The analytics service's deploy unit: its identity and grants, its workload, its network policy, and the Job
that seeds the stream registry.

One group member per replica, reading results as its own group, publishing events and showing archived
frames (read from S3 under the frames prefix only) in its live view. Every replica follows the whole stream
registry (each stream's lines and zones, live) and serves its control API, which writes the registry. Replicas
are a setting, not KEDA's: the partition count bounds them, and a rebalance resets the trackers of the streams
that move (recorded as tracker_reset events).

The registry seed (the settings' `streams`) is applied by a run-once Job through that control API, without
pruning: a stream added at runtime survives every deploy.
"""

from __future__ import annotations

import hashlib
import json

import yaml
from cdk8s_plus_36 import k8s
from constructs import Construct

from cdk8s_app.network import (
    https,
    kafka,
    namespace,
    network_policy,
    pod_identity,
    pods,
    reads_token,
    tcp,
    to_unit,
)
from cdk8s_app.pods import ContainerSpec, app_labels, cluster_ip_service, config_map, config_map_volume, job
from cdk8s_app.rooms import Room
from cdk8s_app.workloads import (
    API_TOKEN_FILE,
    ASSET_IMAGE_ANNOTATIONS,
    KAFKA_CONFIG,
    api_token_settings,
    api_token_volume,
    unit_labels,
)
from vidpipe_deploy.facts import FRAMES_PREFIX, GENERAL_POOL, is_token
from vidpipe_deploy.units import CONNECT, KAFKA_WHY, JobUnit, ObjectGrant, joins, names_group, reads, writes
from vidpipe_deploy.wiring import PlatformWiring, Resources

# The registry seed: one run-once Job per version of the seed, applying the seed file with the registry's CLI.
SEED = JobUnit(name="stream-registry-seed", component="registry-seed", sends_api_token=True)
SEED_DIR = "/seed"
SEED_KEY = "streams.yaml"
# A failed try (the analytics API not up yet, the registry topic not created yet: exit 1) is retried by the Job
# controller, 10 s apart and doubling up to 6 minutes: 8 tries span about 20 minutes.
SEED_BACKOFF_LIMIT = 8
# The finished Job and its pods (their logs) are deleted after a week.
SEED_TTL_SECONDS = 7 * 24 * 3600
SEED_RESOURCES = Resources(cpu_request="50m", cpu_limit="500m", memory_request="64Mi", memory_limit="256Mi")


class Analytics(Room):
    def add_workload(self, scope: Construct, wiring: PlatformWiring) -> None:
        labels = unit_labels(self)
        config_map(
            scope,
            self.name,
            {
                "ANALYTICS_HOST": "0.0.0.0",
                "ANALYTICS_PORT": str(self.port),
                "ANALYTICS_OPS_PORT": str(self.health_port),
                "ANALYTICS_ARCHIVE_URI": wiring.archive_uri,  # the consumer's CONSUMER_ARCHIVE_URI
                # Lines and zones come from the stream registry (TOPICS_STREAMS), which it follows, and it serves
                # the registry's control API (the seed Job uses it).
                "ANALYTICS_REGISTRY": "true",
                # The group its IAM grant names (below): the contract's, stated so the two cannot drift.
                "ANALYTICS_GROUP_ID": wiring.topics.analytics_group,
                "ANALYTICS_LOG_LEVEL": "info",
                "ANALYTICS_LOG_FORMAT": "json",  # one object per line, with the trace id, for the log pipeline
                "KAFKA_CLIENT_ID": self.name,
                # Overrides vidpipe-kafka (a later envFrom source wins): the publisher and consumer create the
                # topics, events and registry included; this identity may not (its grants hold no CreateTopic).
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
        )
        self.deploy(
            scope,
            wiring,
            container,
            tmp_size="256Mi",
            grace_seconds=30,  # ANALYTICS_SHUTDOWN_TIMEOUT_S (10 s) to deliver pending events, then commit
            replicas=wiring.scaling.analytics_replicas,
        )
        # `kubectl -n vidpipe port-forward svc/analytics 8082:8082` reaches the live view and the control API; the
        # ops port answers KEDA's count of the registry's streams (the publishers' scaling rule).
        cluster_ip_service(
            scope,
            f"{self.api_service}-svc",
            self.api_service,
            labels,
            "http",
            self.port,
            more_ports={"ops": self.health_port},
        )

    def add_network_policy(self, scope: Construct, wiring: PlatformWiring) -> None:
        """Egress to Kafka, HTTPS to S3 (archived frames) and the VPC's endpoints (token), and the Pod Identity
        agent. Ingress: the seed Job on its API port; the KEDA operator's namespace on its ops port (the count of
        streams). Its live view is reached with `kubectl port-forward`, which the kubelet delivers inside the pod,
        past NetworkPolicy, like the probes."""
        network_policy(
            scope,
            self.name,
            unit_labels(self),
            ingress=[
                k8s.NetworkPolicyIngressRule(from_=[pods(seed_labels())], ports=tcp(self.port)),
                k8s.NetworkPolicyIngressRule(from_=[namespace(wiring.keda_namespace)], ports=tcp(self.health_port)),
            ],
            egress=[kafka(wiring), *https(wiring, s3=True, aws_apis=reads_token(wiring, self)), pod_identity()],
        )

    def add_jobs(self, scope: Construct, wiring: PlatformWiring) -> None:
        """The registry seed: an immutable ConfigMap named after the seed's hash, and a Job named after the hash
        of the seed and of the pod that applies it. A Job's pod template cannot change, so anything that changes
        it (the seed, the image, the token's source) is a new Job, which runs once; an unchanged re-apply finds
        the Job there and changes nothing. `--no-prune`: streams added at runtime stay."""
        labels = seed_labels()
        seed = seed_yaml(wiring)
        seed_name = f"{SEED.name}-{digest(seed)}"
        config_map(scope, seed_name, {SEED_KEY: seed}, labels, immutable=True)
        seed_volume, seed_mount = config_map_volume("seed", seed_name, SEED_DIR)
        url = f"http://{self.api_service}.{wiring.namespace}.svc:{self.port}"
        token_args: list[str] = []
        volumes, mounts = [seed_volume], [seed_mount]
        if wiring.api_token_secret_arn:
            # The CLI reads the secret itself, with the Job's own Pod Identity (GetSecretValue on it alone).
            token_args = ["--token-secret-arn", wiring.api_token_secret_arn]
        elif (token := api_token_volume(wiring)) is not None:
            token_args = ["--token-file", API_TOKEN_FILE]
            volumes.append(token[0])
            mounts.append(token[1])
        container = ContainerSpec(
            name=SEED.component,
            image=wiring.image(self.role),
            resources=SEED_RESOURCES,
            config_maps=[],
            ports={},
            probes=None,
            command=["python", "-m", "vidpipe.streams"],
            # The URL and the token's source are the CLI's own options, before its command.
            args=["--url", url, *token_args, "apply", "-f", f"{SEED_DIR}/{SEED_KEY}", "--no-prune"],
            mounts=mounts,
        )
        # What the Job runs, beside the seed: a change to any of it is a new Job. Literals only: a CDK token's
        # text differs from one synth to the next (the image's revision stands for the image; the token's secret
        # changes only with the stack).
        run = json.dumps(
            {
                "image": wiring.image_revision(self.role),
                "command": container.command,
                "args": [a for a in container.args or [] if not is_token(a)],
                "token_secret": wiring.api_token_file_secret,
                "account": SEED.name,
            },
            sort_keys=True,
        )
        job(
            scope,
            f"{SEED.name}-{digest(seed + run)}",
            labels,
            container,
            SEED.name,
            tmp_size="16Mi",
            backoff_limit=SEED_BACKOFF_LIMIT,
            ttl_seconds_after_finished=SEED_TTL_SECONDS,
            node_selector=wiring.node_selectors.pool(self.pool),
            automount_token=wiring.automount_service_account_token,
            volumes=volumes,
            annotations=ASSET_IMAGE_ANNOTATIONS,
        )
        network_policy(
            scope,
            SEED.name,
            labels,
            egress=[
                to_unit(self),
                *https(wiring, aws_apis=wiring.api_token_secret_arn is not None),  # Secrets Manager: the token
                *([pod_identity()] if wiring.api_token_secret_arn else []),
            ],
        )


def seed_labels() -> dict[str, str]:
    return app_labels(SEED.name, SEED.component)


def seed_yaml(wiring: PlatformWiring) -> str:
    """The seed as a streams file for `python -m vidpipe.streams apply -f`: each definition whole, as the registry
    holds it (so its hash is the content's, however the settings spelt it)."""
    streams = [d.document() for d in wiring.seed]
    return yaml.safe_dump({"streams": streams}, sort_keys=False, default_flow_style=None)


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:10]


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
        # It follows the registry and each stream's status, and its control API writes the registry.
        reads("ReadStreamsAndStatuses", "streams", "streams_status"),
        writes("WriteEventsAndStreams", "events", "streams"),
        joins("analytics_group"),
        names_group("reader_group"),
        ObjectGrant(sid="ReadArchivedFrames", actions=("s3:GetObject",), prefix=FRAMES_PREFIX),
    ),
    jobs=(SEED,),
    image_budget_mb=450,  # scipy and numpy are most of it, no OpenCV
    nag_reason=f"{KAFKA_WHY}; s3:GetObject only under {FRAMES_PREFIX}",
)
