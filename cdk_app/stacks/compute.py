"""EKS (managed node groups), the service units' identities, KEDA, the images and the workloads.

The stack composes: what each service needs comes from its unit (vidpipe_deploy/units.py, rendered by
cdk_app/units.py), KEDA from its add-on (constructs/keda.py), the charts from cdk8s_app.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aws_cdk import Aws, CfnOutput, RemovalPolicy
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_eks_v2 as eks
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk.lambda_layer_kubectl_v36 import KubectlV36Layer
from constructs import Construct

from vidpipe_deploy.facts import (
    ARCHIVE_PREFIX,
    GATE_VERDICTS_PREFIX,
    MSK_IAM_PORT,
    NODE_POOL_LABEL,
    NODE_POOLS,
    PART_OF,
    OutputKeys,
)
from vidpipe_deploy.units import Services, identity_outputs

from ..config import PlatformConfig
from ..constructs import KafkaArns, ServiceIdentity, ServiceImages
from ..constructs.keda import KedaAddOn
from ..constructs.observability import Observability
from ..nag import ack, logical_id, managed
from ..units import GrantTargets, deploy_identity
from ..workloads import WorkloadInputs, add_workloads, build_wiring
from .base import PlatformStack


class ComputeStack(PlatformStack):
    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        config: PlatformConfig,
        vpc: ec2.IVpc,
        bucket_name: str,
        archive_key_arn: str,
        kafka_bootstrap_brokers: str,
        kafka_security_group: ec2.ISecurityGroup,
        model_object_key: str,
        model_sha256: str | None = None,
        services_dir: Path,
        services: Services,
        alert_rules_file: Path,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, id, config=config, **kwargs)
        self.services = services
        bucket = s3.Bucket.from_bucket_name(self, "ArchiveBucket", bucket_name)
        self.cluster = self._cluster(config, vpc)
        self._limit_control_plane_egress(vpc)
        self._node_groups(config)
        self._allow_kafka_clients(kafka_security_group)

        # The workloads meet the restricted Pod Security profile; KEDA's chart is held to its unit's level.
        self.app_namespace = self._namespace(config.namespace, "restricted")
        targets = GrantTargets(
            stack=self,
            kafka=KafkaArns(self, config.kafka_cluster_name),
            kafka_cluster_name=config.kafka_cluster_name,
            bucket=bucket,
            resource_prefix=config.prefix,
            topics=config.topics,
            archive_key_arn=archive_key_arn,
        )
        self.api_token = self._api_token(config)
        self.identities = self._identities(config, targets)
        self.keda = KedaAddOn(config.keda_chart_version).deploy(
            self.cluster, targets, self._namespace, chart_after=self.node_groups
        )
        self.identities[self.keda.unit.service_account] = self.keda.identity
        self.keda_namespace, self.keda_chart = self.keda.namespace, self.keda.chart
        self.images = ServiceImages(self, "Images", services_dir=services_dir, services=services)

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
                    images=self.images.uris,
                    image_revisions=self.images.revisions,
                    vpc_cidr=vpc.vpc_cidr_block,
                    services=services,
                    api_token_secret_arn=self.api_token.secret_arn,
                    model_sha256=model_sha256,
                    # Beside the model, in its bucket: the inference identity may read and write only there.
                    gate_cache_uri=f"s3://{bucket.bucket_name}/{GATE_VERDICTS_PREFIX}",
                ),
            ),
            workloads_after=[self.app_namespace, *self.identities.values()],
            autoscaling_after=[self.keda_chart],
        )
        self.model_sha256 = model_sha256
        self.observability = (
            Observability(
                self,
                "Observability",
                cluster=self.cluster,
                cluster_name=config.prefix,
                vpc=vpc,
                prefix=config.prefix,
                namespace=config.namespace,
                scrape_ports=[unit.health_port for unit in services.all()],
                alert_rules_file=alert_rules_file,
                alert_email=config.alert_email,
                log_retention_days=config.container_log_retention_days,
                addon_after=self.node_groups,
            )
            if config.observability
            else None
        )
        self._outputs(config)
        self._acknowledge_findings()

    # --- cluster ---------------------------------------------------------------------------

    def _cluster(self, config: PlatformConfig, vpc: ec2.IVpc) -> eks.Cluster:
        secrets_key = kms.Key(
            self,
            "SecretsKey",
            description=f"{config.prefix}: EKS secrets envelope encryption",
            enable_key_rotation=True,
        )
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
            # All five control-plane logs: who did what (api, audit, authenticator) and why pods moved or
            # did not start (controllerManager, scheduler).
            cluster_logging=[
                eks.ClusterLoggingTypes.API,
                eks.ClusterLoggingTypes.AUDIT,
                eks.ClusterLoggingTypes.AUTHENTICATOR,
                eks.ClusterLoggingTypes.CONTROLLER_MANAGER,
                eks.ClusterLoggingTypes.SCHEDULER,
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
            [
                eks.AccessPolicy.from_access_policy_name(
                    "AmazonEKSClusterAdminPolicy", access_scope_type=eks.AccessScopeType.CLUSTER
                )
            ],
        )
        # The charts ship NetworkPolicies: the VPC CNI enforces them only with this switch on.
        vpc_cni = eks.Addon(
            self, "VpcCni", cluster=cluster, addon_name="vpc-cni", configuration_values={"enableNetworkPolicy": "true"}
        )
        vpc_cni.node.default_child.add_property_override("ResolveConflicts", "OVERWRITE")  # type: ignore[union-attr]
        return cluster

    def _limit_control_plane_egress(self, vpc: ec2.IVpc) -> None:
        """The control plane's own security group sends only to the VPC (kubelets, webhooks, pods), not to any
        address. Its egress is overridden in place: a different security group would replace the cluster.
        (EKS's cluster security group, which EKS creates and owns, keeps its own rules.)"""
        group = self.cluster.node.find_child("ControlPlaneSecurityGroup").node.default_child
        group.add_property_override(  # type: ignore[union-attr]
            "SecurityGroupEgress",
            [
                {
                    "CidrIp": vpc.vpc_cidr_block,
                    "IpProtocol": "tcp",
                    "FromPort": 0,
                    "ToPort": 65535,
                    "Description": "Control plane to nodes and pods in the VPC",
                }
            ],
        )

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
                    volume=ec2.BlockDeviceVolume.ebs(
                        disk_size_gib,
                        volume_type=ec2.EbsDeviceVolumeType.GP3,
                        encrypted=True,
                        delete_on_termination=True,
                    ),
                )
            ],
        )

    def _node_groups(self, config: PlatformConfig) -> None:
        self.node_groups = []
        self.node_launch_templates = []
        groups = {"general": config.general_nodes, "inference": config.inference_nodes}
        for name in NODE_POOLS:
            group = groups[name]
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
                    labels={NODE_POOL_LABEL: name},
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
            from_port=MSK_IAM_PORT,
            to_port=MSK_IAM_PORT,
            description="EKS pods and KEDA to MSK (SASL/IAM over TLS)",
        )

    def _namespace(self, name: str, enforce: str) -> eks.KubernetesManifest:
        labels = {
            "app.kubernetes.io/part-of": PART_OF,
            "pod-security.kubernetes.io/enforce": enforce,
            "pod-security.kubernetes.io/warn": "restricted",
        }
        return self.cluster.add_manifest(
            f"Namespace-{name}", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}
        )

    # --- identities ------------------------------------------------------------------------

    def _api_token(self, config: PlatformConfig) -> secretsmanager.Secret:
        """The API token: generated here, never seen by CloudFormation or a manifest. Inference and analytics
        require it as a bearer token, the consumer sends it; their roles alone may read it (_identities).
        A new stack makes a new token; the services read it once, at start-up."""
        return secretsmanager.Secret(
            self,
            "ApiToken",
            description=f"{config.prefix}: bearer token of the inference and analytics APIs",
            generate_secret_string=secretsmanager.SecretStringGenerator(
                password_length=64, exclude_punctuation=True, include_space=False
            ),
            removal_policy=RemovalPolicy.DESTROY,
        )

    def _identities(self, config: PlatformConfig, targets: GrantTargets) -> dict[str, ServiceIdentity]:
        """One Pod Identity per service unit, with the grants its unit declares, and one per run-once Job a unit
        declares (the registry seed: reading the API token, nothing else). The publishers' identity may also read
        the Secrets Manager secrets holding camera URLs (those the seed names, and vidpipe:cameraSecretArns);
        the URLs never enter the template or a manifest. A secret encrypted with a customer managed KMS key also
        needs kms:Decrypt for this role."""

        def identity(name: str, grants, nag_reason: str, extra=()) -> ServiceIdentity:
            return deploy_identity(
                targets,
                self.cluster,
                name=name,
                namespace=config.namespace,
                grants=grants,
                nag_reason=nag_reason,
                extra=extra,
                after=[self.app_namespace],
            )

        read_token = iam.PolicyStatement(
            sid="ReadApiToken", actions=["secretsmanager:GetSecretValue"], resources=[self.api_token.secret_arn]
        )
        camera_secrets = config.camera_secrets_manager_arns
        read_cameras = iam.PolicyStatement(
            sid="ReadCameraSources", actions=["secretsmanager:GetSecretValue"], resources=camera_secrets
        )
        identities: dict[str, ServiceIdentity] = {}
        for unit in self.services.all():
            extra = [read_token] if unit.api_token_variable else []
            if unit.role == self.services.publisher.role and camera_secrets:
                extra.append(read_cameras)
            identities[unit.name] = identity(unit.name, unit.grants, unit.nag_reason, extra)
            for job in unit.jobs:
                identities[job.name] = identity(
                    job.name, job.grants, job.nag_reason, [read_token] if job.sends_api_token else []
                )
        return identities

    # --- outputs ---------------------------------------------------------------------------

    def _outputs(self, config: PlatformConfig) -> None:
        """Stable, export-free output names: the cdk8s side reads them from cdk-outputs.json.

        The MSK outputs live in the data stack: re-exporting an imported value trips cfn-lint W6001.
        """
        outputs = {
            OutputKeys.REGION: (Aws.REGION, "Deployment region"),
            OutputKeys.CLUSTER_NAME: (self.cluster.cluster_name, "EKS cluster name"),
            OutputKeys.KUBECONFIG_COMMAND: (
                f"aws eks update-kubeconfig --name {self.cluster.cluster_name} --region {Aws.REGION}",
                "Configures kubectl for the cluster",
            ),
            OutputKeys.ARCHIVE_BUCKET: (self.bucket.bucket_name, "Archive and model bucket"),
            OutputKeys.ARCHIVE_URI: (self.archive_uri, "CONSUMER_ARCHIVE_URI"),
            OutputKeys.MODEL_URI: (self.model_uri, "INFERENCE_MODEL_URI"),
            OutputKeys.NAMESPACE: (config.namespace, "Kubernetes namespace of the workloads"),
            **(
                {
                    OutputKeys.MODEL_SHA256: (
                        self.model_sha256,
                        "INFERENCE_MODEL_SHA256: the model file this deploy uploaded",
                    )
                }
                if self.model_sha256
                else {}
            ),
            OutputKeys.API_TOKEN_SECRET_ARN: (
                self.api_token.secret_arn,
                "API token secret: INFERENCE_API_TOKEN_SECRET_ARN, ANALYTICS_API_TOKEN_SECRET_ARN, "
                "CONSUMER_INFERENCE_TOKEN_SECRET_ARN, the registry seed Job's --token-secret-arn",
            ),
            self.keda.unit.NAMESPACE_OUTPUT: (self.keda.unit.namespace, "Namespace of the KEDA operator"),
        }
        for unit in self.services.all():
            outputs[unit.image_output] = (self.images.uris[unit.role], f"{unit.name} image")
        for name, identity in self.identities.items():
            account_key, role_key = identity_outputs(name)
            outputs[account_key] = (identity.name, f"ServiceAccount of {name}")
            outputs[role_key] = (identity.role_arn, f"IAM role of {name} (EKS Pod Identity)")
        for key, (value, description) in outputs.items():
            CfnOutput(self, key, value=value, description=description)

    def _acknowledge_findings(self) -> None:
        """cdk-nag findings of this stack's own resources, each with its reason (cdk_app/nag.py)."""
        ack(
            self.api_token,
            "AwsSolutions-SMG4",
            "The services read the token once at start-up: rotate by hand (put-secret-value, then restart the "
            "three Deployments; docs/DEPLOY.md), not on a schedule that would split them between two tokens",
        )
        cluster = self.cluster
        ack(
            cluster.node.find_child("Role"),
            "AwsSolutions-IAM4",
            "EKS control plane role needs AmazonEKSClusterPolicy",
            managed("AmazonEKSClusterPolicy"),
        )
        for group in self.node_groups:
            ack(
                group.role,
                "AwsSolutions-IAM4",
                "Managed node group role: the policies EKS documents for worker nodes",
                managed("AmazonEKSWorkerNodePolicy", "AmazonEKS_CNI_Policy", "AmazonEC2ContainerRegistryReadOnly"),
            )

        provider = cluster.node.find_child("KubectlProvider")
        handler = provider.node.find_child("Handler")
        ack(handler, "AwsSolutions-L1", "CDK's kubectl handler: runtime pinned by aws-cdk-lib and the kubectl layer")
        has_ecr_public = self.get_logical_id(handler.node.find_child("HasEcrPublic"))  # type: ignore[arg-type]
        ecr_public = (
            f'{{"Fn::If":["{has_ecr_public}",{{"Fn::Join":["",["arn:",{{"Ref":"AWS::Partition"}},'
            '":iam::aws:policy/AmazonElasticContainerRegistryPublicReadOnly"]]},{"Ref":"AWS::NoValue"}]}'
        )
        ack(
            handler,
            "AwsSolutions-IAM4",
            "CDK's kubectl handler in the VPC: logs, ENIs and Helm chart pulls",
            managed(
                "service-role/AWSLambdaBasicExecutionRole",
                "service-role/AWSLambdaVPCAccessExecutionRole",
                "AmazonEC2ContainerRegistryReadOnly",
            )
            + [f"Policy::{ecr_public}"],
        )
        on_event = provider.node.find_child("Provider").node.find_child("framework-onEvent")
        ack(
            on_event,
            "AwsSolutions-IAM4",
            "CDK's custom-resource provider framework: logs and ENIs",
            managed("service-role/AWSLambdaBasicExecutionRole", "service-role/AWSLambdaVPCAccessExecutionRole"),
        )
        ack(
            on_event,
            "AwsSolutions-IAM5",
            "CDK's provider framework invokes every version of the kubectl handler",
            [f"Resource::<{logical_id(handler)}.Arn>:*"],
        )
        if self.observability is not None:
            ack(
                self.observability.agent_role,
                "AwsSolutions-IAM4",
                "The CloudWatch observability add-on's agent: the policy its documentation names for it",
                managed("CloudWatchAgentServerPolicy"),
            )
        # The services' and KEDA's own policies are acknowledged with their units (cdk_app/units.py).
