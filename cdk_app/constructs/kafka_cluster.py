"""Amazon MSK (provisioned): IAM client auth over TLS, KMS at rest, broker logs, our server properties."""

from __future__ import annotations

from aws_cdk import ArnFormat, RemovalPolicy, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_msk as msk_l1
from aws_cdk import aws_msk_alpha as msk
from constructs import Construct

from vidpipe_deploy.facts import kafka_resource

from ..retention import log_retention

_KAFKA_VERSIONS = {"3.8.x": msk.KafkaVersion.V3_8_X, "3.9.x": msk.KafkaVersion.V3_9_X}


class KafkaCluster(Construct):
    """An MSK cluster whose brokers sit in the VPC's private subnets, one set per AZ."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        vpc: ec2.IVpc,
        cluster_name: str,
        kafka_version: str,
        brokers_per_az: int,
        instance_type: str,
        volume_gib: int,
        server_properties: str,
        log_retention_days: int,
        removal_policy: RemovalPolicy = RemovalPolicy.RETAIN,
    ) -> None:
        super().__init__(scope, id)
        self.cluster_name = cluster_name
        self.key = kms.Key(
            self,
            "Key",
            description=f"{cluster_name}: MSK data at rest",
            enable_key_rotation=True,
            removal_policy=removal_policy,
        )
        self.security_group = ec2.SecurityGroup(
            self,
            "SecurityGroup",
            vpc=vpc,
            description=f"{cluster_name} brokers: clients are added by the compute stack",
            allow_all_outbound=False,
        )
        self.log_group = logs.LogGroup(
            self, "BrokerLogs", retention=log_retention(log_retention_days), removal_policy=removal_policy
        )
        self.configuration = msk_l1.CfnConfiguration(
            self,
            "Configuration",
            name=cluster_name,
            description="vidpipe contract: 8 MiB records, no auto-created topics",
            kafka_versions_list=[kafka_version],
            server_properties=server_properties,
        )
        self.cluster = msk.Cluster(
            self,
            "Cluster",
            cluster_name=cluster_name,
            kafka_version=_KAFKA_VERSIONS[kafka_version],
            vpc=vpc,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
            security_groups=[self.security_group],
            # msk-alpha adds the "kafka." prefix itself.
            instance_type=ec2.InstanceType(instance_type.removeprefix("kafka.")),
            number_of_broker_nodes=brokers_per_az,
            ebs_storage_info=msk.EbsStorageInfo(volume_size=volume_gib, encryption_key=self.key),
            encryption_in_transit=msk.EncryptionInTransitConfig(
                client_broker=msk.ClientBrokerEncryption.TLS, enable_in_cluster=True
            ),
            client_authentication=msk.ClientAuthentication.sasl(iam=True),
            logging=msk.BrokerLogging(cloudwatch_log_group=self.log_group),
            configuration_info=msk.ClusterConfigurationInfo(
                arn=self.configuration.attr_arn,
                revision=self.configuration.attr_latest_revision_revision,
            ),
            removal_policy=removal_policy,
        )

    @property
    def bootstrap_brokers_sasl_iam(self) -> str:
        return self.cluster.bootstrap_brokers_sasl_iam


class KafkaArns:
    """IAM resource ARNs for MSK's kafka-cluster actions, built from the known cluster name.

    The cluster's UUID is only known after deployment; a `*` in its place keeps the statements on
    this cluster name (splitting the cluster ARN output would need Fn::Split, which cfn-lint rejects).
    """

    def __init__(self, stack: Stack, cluster_name: str) -> None:
        self._stack = stack
        self._name = cluster_name

    def _arn(self, kind: str, name: str | None = None) -> str:
        resource, _, resource_name = kafka_resource(kind, self._name, name).partition("/")
        return self._stack.format_arn(
            service="kafka", resource=resource, resource_name=resource_name, arn_format=ArnFormat.SLASH_RESOURCE_NAME
        )

    @property
    def cluster(self) -> str:
        return self._arn("cluster")

    def topic(self, topic: str) -> str:
        return self._arn("topic", topic)

    def group(self, group: str) -> str:
        return self._arn("group", group)
