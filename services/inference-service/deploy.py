"""The inference service's deploy unit: its identity and grants, its workload, its network policy and its
scaling.

It reads the model from S3 (under the models prefix only) and keeps its start-up accuracy gate's verdicts beside
it (under the gate-verdicts prefix only), serves the consumer alone on its API port, and scales with KEDA on the
consumer group's lag (not a group member: it may outnumber the partitions). Its pod fills one node of the
inference pool, sized from the committed figures for the node type (vidpipe_deploy/sizing.py).
"""

from __future__ import annotations

from constructs import Construct

from cdk8s_app.autoscaling import Autoscaling
from cdk8s_app.network import from_units, https, network_policy, pod_identity, reads_token
from cdk8s_app.pods import cluster_ip_service, config_map
from cdk8s_app.rooms import Room
from cdk8s_app.workloads import api_token_settings, unit_labels
from vidpipe_deploy.facts import GATE_VERDICTS_PREFIX, INFERENCE_POOL, MODELS_PREFIX
from vidpipe_deploy.units import ObjectGrant
from vidpipe_deploy.wiring import PlatformWiring

MODEL_CACHE_DIR = "/tmp/vidpipe-models"


class Inference(Room):
    def add_workload(self, scope: Construct, wiring: PlatformWiring) -> None:
        labels = unit_labels(self)
        config_map(
            scope,
            self.name,
            {
                "INFERENCE_MODEL_URI": wiring.model_uri,
                "INFERENCE_MODEL_CACHE_DIR": MODEL_CACHE_DIR,
                **({"INFERENCE_MODEL_SHA256": wiring.model_sha256} if wiring.model_sha256 else {}),
                **({"INFERENCE_GATE_CACHE_URI": wiring.gate_cache_uri} if wiring.gate_cache_uri else {}),
                "INFERENCE_HOST": "0.0.0.0",
                "INFERENCE_PORT": str(self.port),
                "INFERENCE_OPS_PORT": str(self.health_port),
                "INFERENCE_INSTANCES": str(wiring.resources.inference_instances),
                "INFERENCE_INTRA_OP_THREADS": str(wiring.resources.inference_threads),
                "INFERENCE_LOG_LEVEL": "info",
                "INFERENCE_LOG_FORMAT": "json",  # one object per line, with the trace id, for the log pipeline
                "AWS_REGION": wiring.region,
                **api_token_settings(wiring, self),
            },
            labels,
        )
        container = self.container(
            wiring,
            startup_seconds=300,  # the model downloads from S3 before /readyz turns 200: minutes, not seconds
            resources=wiring.resources.inference,
            config_maps=[self.name],
            ports={"http": self.port, "ops": self.health_port},
        )
        # The model cache lives under /tmp; uvicorn drains in-flight requests for up to 30 s. The annotation says
        # which committed figures the pod's size and the thresholds came from (an estimate or a measurement).
        self.deploy(
            scope,
            wiring,
            container,
            tmp_size="1Gi",
            grace_seconds=40,
            pod_annotations={"vidpipe.io/sized-for": wiring.inference_sizing.note},
        )
        cluster_ip_service(scope, f"{self.api_service}-svc", self.api_service, labels, "http", self.port)

    def add_network_policy(self, scope: Construct, wiring: PlatformWiring) -> None:
        """Ingress on its API port from the consumer only; egress HTTPS to S3 (the model), to the VPC's
        interface endpoints (Secrets Manager: the API token) and the Pod Identity agent."""
        network_policy(
            scope,
            self.name,
            unit_labels(self),
            ingress=[from_units(self, wiring.services.consumer)],
            egress=[*https(wiring, s3=True, aws_apis=reads_token(wiring, self)), pod_identity()],
        )

    def add_scaling(self, scope: Autoscaling, wiring: PlatformWiring) -> None:
        """One consumer keeps several batches in flight, so inference may use more replicas than there are
        partitions (allowIdleConsumers lifts the partition cap on the metric)."""
        s = wiring.scaling
        scope.frames_lag(
            self.name, s.inference_min_replicas, wiring.inference_max_replicas, s.inference_lag_threshold, False
        )


UNIT = Inference(
    role="inference",
    component="inference",
    port=8080,
    ops_port=8090,
    pool=INFERENCE_POOL,
    service_name="inference",  # the consumer's CONSUMER_INFERENCE_URL names it
    api_token_variable="INFERENCE_API_TOKEN",
    grants=(
        ObjectGrant(sid="ReadModels", actions=("s3:GetObject",), prefix=MODELS_PREFIX),
        # The start-up gate's verdicts: read one for this model and CPU, write one after judging (never delete).
        ObjectGrant(sid="GateVerdicts", actions=("s3:GetObject", "s3:PutObject"), prefix=GATE_VERDICTS_PREFIX),
    ),
    image_budget_mb=900,  # onnxruntime and OpenVINO
    nag_reason=f"s3:GetObject only under {MODELS_PREFIX}; s3:GetObject and s3:PutObject only under "
    f"{GATE_VERDICTS_PREFIX} (the start-up gate's verdicts)",
)
