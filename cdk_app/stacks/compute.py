"""EKS (managed node groups), per-service identities, KEDA, the images and the workloads."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from aws_cdk import Aws, CfnOutput
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_eks_v2 as eks
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk.lambda_layer_kubectl_v36 import KubectlV36Layer
from constructs import Construct

from ..config import PlatformConfig
from ..constructs import KafkaArns, ServiceIdentity, ServiceImages
from ..constructs.archive_bucket import ARCHIVE_PREFIX, MODELS_PREFIX
from ..constructs.kafka_cluster import SASL_IAM_PORT
from ..workloads import WorkloadInputs, add_workloads, build_wiring
from .base import PlatformStack

KEDA_NAMESPACE = "keda"
KEDA_OPERATOR_SERVICE_ACCOUNT = "keda-operator"
KEDA_CHART_REPOSITORY = "https://kedacore.github.io/charts"

# ServiceAccount names (the charts reference them; this stack creates them).
PUBLISHER_SERVICE_ACCOUNT = "frame-publisher"
CONSUMER_SERVICE_ACCOUNT = "consumer-service"
INFERENCE_SERVICE_ACCOUNT = "inference-service"


def stream_service_account(stream_id: str) -> str:
    """The ServiceAccount of a publisher that reads its source URL from Secrets Manager."""
    return f"{PUBLISHER_SERVICE_ACCOUNT}-{stream_id}"


class ComputeStack(PlatformStack):
    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        config: PlatformConfig,
        vpc: ec2.IVpc,
        bucket_name: str,
        kafka_bootstrap_brokers: str,
        kafka_security_group: ec2.ISecurityGroup,
        model_object_key: str,
        services_dir: Path,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, id, config=config, **kwargs)
        bucket = s3.Bucket.from_bucket_name(self, "ArchiveBucket", bucket_name)
        self.cluster = self._cluster(config, vpc)
        self._node_groups(config)
        self._allow_kafka_clients(kafka_security_group)

        # The workloads meet the restricted Pod Security profile; KEDA's chart is held to baseline.
        self.app_namespace = self._namespace(config.namespace, enforce="restricted")
        self.keda_namespace = self._namespace(KEDA_NAMESPACE, enforce="baseline")
        kafka = KafkaArns(self, config.kafka_cluster_name)
        self.identities = self._identities(config, kafka, bucket)
        self.keda_chart = self._keda(config)
        self.images = ServiceImages(self, "Images", services_dir=services_dir)

        self.bucket = bucket
        self.kafka_bootstrap_brokers = kafka_bootstrap_brokers
        self.model_uri = f"s3://{bucket.bucket_name}/{model_object_key}"
        self.archive_uri = f"s3://{bucket.bucket_name}/{ARCHIVE_PREFIX.rstrip('/')}"
        self.workloads = add_workloads(
            self.cluster,
            build_wiring(
                config,
                WorkloadInputs(
                    kafka_bootstrap=kafka_bootstrap_brokers,
                    archive_uri=self.archive_uri,
                    model_uri=self.model_uri,
                    publisher_image=self.images.publisher,
                    consumer_image=self.images.consumer,
                    inference_image=self.images.inference,
                    vpc_cidr=vpc.vpc_cidr_block,
                    service_accounts={
                        "publisher": PUBLISHER_SERVICE_ACCOUNT,
                        "consumer": CONSUMER_SERVICE_ACCOUNT,
                        "inference": INFERENCE_SERVICE_ACCOUNT,
                    },
                    stream_service_accounts={
                        s.id: stream_service_account(s.id) for s in config.streams if s.source_secret_arn
                    },
                ),
            ),
            workloads_after=[self.app_namespace, *self.identities.values()],
            autoscaling_after=[self.keda_chart],
        )
        self._outputs(config)

    # --- cluster ---------------------------------------------------------------------------

    def _cluster(self, config: PlatformConfig, vpc: ec2.IVpc) -> eks.Cluster:
        secrets_key = kms.Key(self, "SecretsKey", description=f"{config.prefix}: EKS secrets envelope encryption",
                              enable_key_rotation=True)
        cluster = eks.Cluster(
            self,
            "Cluster",
            cluster_name=config.prefix,
            version=eks.KubernetesVersion.of(config.kubernetes_version),  # config.KUBERNETES_VERSION
            vpc=vpc,
            vpc_subnets=[ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS)],
            # Managed node groups, not Auto Mode: see docs/DEPLOY.md ("Choices").
            default_capacity_type=eks.DefaultCapacityType.NODEGROUP,
            default_capacity=0,
            endpoint_access=self._endpoint_access(config),
            # With private access on, aws_eks_v2 runs the kubectl handler in the cluster's private subnets
            # (cluster security group), so it reaches a private-only endpoint; AWS APIs and the Helm
            # repository go through the NAT gateway and the VPC endpoints.
            kubectl_provider_options=eks.KubectlProviderOptions(kubectl_layer=KubectlV36Layer(self, "KubectlLayer")),
            cluster_logging=[
                eks.ClusterLoggingTypes.API,
                eks.ClusterLoggingTypes.AUDIT,
                eks.ClusterLoggingTypes.AUTHENTICATOR,
            ],
            secrets_encryption_key=secrets_key,
            output_config_command=False,  # our own, stably named output below
        )
        # Standard support only: at its end EKS upgrades the control plane instead of moving the cluster
        # into extended support, which costs six times as much per hour (aws_eks_v2.Cluster has no prop).
        cfn_cluster: eks.CfnCluster = cluster.node.default_child  # type: ignore[assignment]
        cfn_cluster.upgrade_policy = eks.CfnCluster.UpgradePolicyProperty(support_type="STANDARD")
        # The person who deploys: authentication mode API admits only principals with an access entry.
        cluster.grant_access(
            "Admin",
            config.admin_principal_arn,  # type: ignore[arg-type]  # required by the config
            [eks.AccessPolicy.from_access_policy_name("AmazonEKSClusterAdminPolicy", access_scope_type=eks.AccessScopeType.CLUSTER)],
        )
        # The charts ship NetworkPolicies: the VPC CNI enforces them only with this switch on.
        vpc_cni = eks.Addon(self, "VpcCni", cluster=cluster, addon_name="vpc-cni",
                            configuration_values={"enableNetworkPolicy": "true"})
        vpc_cni.node.default_child.add_property_override("ResolveConflicts", "OVERWRITE")  # type: ignore[union-attr]
        return cluster

    @staticmethod
    def _endpoint_access(config: PlatformConfig) -> eks.EndpointAccess:
        """Private unless vidpipe:endpointPublicCidrs names who may reach the public endpoint."""
        if not config.endpoint_public_cidrs:
            return eks.EndpointAccess.PRIVATE
        return eks.EndpointAccess.PUBLIC_AND_PRIVATE.only_from(*config.endpoint_public_cidrs)

    def _node_launch_template(self, name: str, disk_size_gib: int) -> ec2.LaunchTemplate:
        """IMDSv2 only, hop limit 1: a pod (one network hop past the node) cannot reach the instance
        metadata service and the node role's credentials; host-network agents (VPC CNI, Pod Identity
        agent, kube-proxy) still can. The root volume moves here: EKS refuses diskSize with a template."""
        return ec2.LaunchTemplate(
            self,
            f"{name.capitalize()}NodeLaunchTemplate",
            require_imdsv2=True,
            http_endpoint=True,
            http_put_response_hop_limit=1,
            block_devices=[
                ec2.BlockDevice(
                    device_name="/dev/xvda",  # the AL2023 EKS AMI's root device
                    volume=ec2.BlockDeviceVolume.ebs(disk_size_gib, volume_type=ec2.EbsDeviceVolumeType.GP3,
                                                     encrypted=True, delete_on_termination=True),
                )
            ],
        )

    def _node_groups(self, config: PlatformConfig) -> None:
        self.node_groups = []
        self.node_launch_templates = []
        for name, group in (("general", config.general_nodes), ("inference", config.inference_nodes)):
            template = self._node_launch_template(name, group.disk_size_gib)
            self.node_launch_templates.append(template)
            self.node_groups.append(
                self.cluster.add_nodegroup_capacity(
                    name.capitalize(),
                    instance_types=[ec2.InstanceType(t) for t in group.instance_types],
                    min_size=group.min_size,
                    desired_size=group.desired_size,
                    max_size=group.max_size,
                    launch_template_spec=eks.LaunchTemplateSpec(
                        id=template.launch_template_id,  # type: ignore[arg-type]
                        version=template.latest_version_number,
                    ),
                    ami_type=eks.NodegroupAmiType.AL2023_X86_64_STANDARD,
                    capacity_type=eks.CapacityType.ON_DEMAND,
                    subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
                    labels={"vidpipe.io/pool": name},
                    enable_node_auto_repair=True,
                )
            )

    def _allow_kafka_clients(self, kafka_security_group: ec2.ISecurityGroup) -> None:
        # Owned here (not kafka.connections.allow_from) so the data stack never references compute.
        ec2.CfnSecurityGroupIngress(
            self,
            "KafkaFromEks",
            group_id=kafka_security_group.security_group_id,
            source_security_group_id=self.cluster.cluster_security_group_id,
            ip_protocol="tcp",
            from_port=SASL_IAM_PORT,
            to_port=SASL_IAM_PORT,
            description="EKS pods and KEDA to MSK (SASL/IAM over TLS)",
        )

    def _namespace(self, name: str, *, enforce: str) -> eks.KubernetesManifest:
        labels = {
            "app.kubernetes.io/part-of": "vidpipe",
            "pod-security.kubernetes.io/enforce": enforce,
            "pod-security.kubernetes.io/warn": "restricted",
        }
        return self.cluster.add_manifest(
            f"Namespace-{name}", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}
        )

    # --- identities ------------------------------------------------------------------------

    def _identities(self, config: PlatformConfig, kafka: KafkaArns, bucket: s3.IBucket) -> dict[str, ServiceIdentity]:
        t = config.topics
        all_topics = [kafka.topic(n) for n in (t.frames, t.results, t.dead_letter)]
        connect = iam.PolicyStatement(
            sid="Connect", actions=["kafka-cluster:Connect", "kafka-cluster:WriteDataIdempotently"], resources=[kafka.cluster]
        )
        # Both services create missing topics at start-up (TOPICS_CREATE=true): never broker auto-create.
        create_topics = iam.PolicyStatement(sid="CreateOwnTopics", actions=["kafka-cluster:CreateTopic"], resources=all_topics)
        statements = {
            PUBLISHER_SERVICE_ACCOUNT: [
                connect,
                create_topics,
                iam.PolicyStatement(
                    sid="WriteFrames",
                    actions=["kafka-cluster:DescribeTopic", "kafka-cluster:WriteData"],
                    resources=[kafka.topic(t.frames)],
                ),
            ],
            CONSUMER_SERVICE_ACCOUNT: [
                connect,
                create_topics,
                iam.PolicyStatement(
                    sid="ReadFrames",
                    actions=["kafka-cluster:DescribeTopic", "kafka-cluster:ReadData"],
                    resources=[kafka.topic(t.frames)],
                ),
                iam.PolicyStatement(
                    sid="WriteResultsAndDeadLetters",
                    actions=["kafka-cluster:DescribeTopic", "kafka-cluster:WriteData"],
                    resources=[kafka.topic(t.results), kafka.topic(t.dead_letter)],
                ),
                iam.PolicyStatement(
                    sid="UseGroup",
                    actions=["kafka-cluster:AlterGroup", "kafka-cluster:DescribeGroup"],
                    resources=[kafka.group(t.consumer_group)],
                ),
                iam.PolicyStatement(
                    sid="PutArchive", actions=["s3:PutObject"], resources=[bucket.arn_for_objects(f"{ARCHIVE_PREFIX}*")]
                ),
            ],
            INFERENCE_SERVICE_ACCOUNT: [
                iam.PolicyStatement(
                    sid="ReadModels", actions=["s3:GetObject"], resources=[bucket.arn_for_objects(f"{MODELS_PREFIX}*")]
                ),
            ],
        }
        # A stream whose URL is in Secrets Manager gets its own publisher identity, allowed to read exactly
        # that secret (the other publishers cannot); the URL never enters the template or a manifest.
        # A secret encrypted with a customer managed KMS key also needs kms:Decrypt for this role.
        for stream in config.streams:
            if stream.source_secret_arn:
                statements[stream_service_account(stream.id)] = [
                    *statements[PUBLISHER_SERVICE_ACCOUNT],
                    iam.PolicyStatement(sid="ReadSourceSecret", actions=["secretsmanager:GetSecretValue"],
                                        resources=[stream.source_secret_arn]),
                ]
        identities = {
            name: ServiceIdentity(
                self,
                f"Identity-{name}",
                cluster=self.cluster,
                name=name,
                namespace=config.namespace,
                statements=stmts,
                after=[self.app_namespace],
            )
            for name, stmts in statements.items()
        }
        identities[KEDA_OPERATOR_SERVICE_ACCOUNT] = ServiceIdentity(
            self,
            "Identity-keda-operator",
            cluster=self.cluster,
            name=KEDA_OPERATOR_SERVICE_ACCOUNT,
            namespace=KEDA_NAMESPACE,
            # The Kafka scaler reads the group's committed offsets and the topic's end offsets.
            statements=[
                iam.PolicyStatement(
                    sid="Connect", actions=["kafka-cluster:Connect", "kafka-cluster:DescribeCluster"], resources=[kafka.cluster]
                ),
                iam.PolicyStatement(sid="DescribeFrames", actions=["kafka-cluster:DescribeTopic"], resources=[kafka.topic(t.frames)]),
                iam.PolicyStatement(
                    sid="DescribeGroup", actions=["kafka-cluster:DescribeGroup"], resources=[kafka.group(t.consumer_group)]
                ),
            ],
            after=[self.keda_namespace],
        )
        return identities

    # --- KEDA ------------------------------------------------------------------------------

    def _keda(self, config: PlatformConfig) -> eks.HelmChart:
        chart = self.cluster.add_helm_chart(
            "Keda",
            chart="keda",
            repository=KEDA_CHART_REPOSITORY,
            version=config.keda_chart_version,
            release="keda",
            namespace=KEDA_NAMESPACE,
            create_namespace=False,
            # The operator runs as our ServiceAccount, which carries the Pod Identity association.
            values={"serviceAccount": {"operator": {"create": False, "name": KEDA_OPERATOR_SERVICE_ACCOUNT}}},
            wait=True,
        )
        chart.node.add_dependency(self.identities[KEDA_OPERATOR_SERVICE_ACCOUNT])
        for group in self.node_groups:
            chart.node.add_dependency(group)  # `wait` needs nodes to schedule the operator on
        return chart

    # --- outputs ---------------------------------------------------------------------------

    def _outputs(self, config: PlatformConfig) -> None:
        """Stable, export-free output names: the cdk8s side reads them from cdk-outputs.json.

        The MSK outputs live in the data stack: re-exporting an imported value trips cfn-lint W6001.
        """
        outputs = {
            "Region": (Aws.REGION, "Deployment region"),
            "ClusterName": (self.cluster.cluster_name, "EKS cluster name"),
            "KubeconfigCommand": (
                f"aws eks update-kubeconfig --name {self.cluster.cluster_name} --region {Aws.REGION}",
                "Configures kubectl for the cluster",
            ),
            "ArchiveBucketName": (self.bucket.bucket_name, "Archive and model bucket"),
            "ArchiveUri": (self.archive_uri, "CONSUMER_ARCHIVE_URI"),
            "ModelUri": (self.model_uri, "INFERENCE_MODEL_URI"),
            "PublisherImageUri": (self.images.publisher, "frame-publisher image"),
            "ConsumerImageUri": (self.images.consumer, "consumer-service image"),
            "InferenceImageUri": (self.images.inference, "inference-service image"),
            "Namespace": (config.namespace, "Kubernetes namespace of the workloads"),
            "KedaNamespace": (KEDA_NAMESPACE, "Namespace of the KEDA operator"),
        }
        for name, identity in self.identities.items():
            key = "".join(part.capitalize() for part in name.split("-"))
            outputs[f"{key}ServiceAccount"] = (identity.name, f"ServiceAccount of {name}")
            outputs[f"{key}RoleArn"] = (identity.role_arn, f"IAM role of {name} (EKS Pod Identity)")
        for key, (value, description) in outputs.items():
            CfnOutput(self, key, value=value, description=description)
