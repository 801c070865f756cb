"""Data that outlives deploys: the archive bucket (with the model) and the MSK cluster (retained)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aws_cdk import CfnOutput, RemovalPolicy
from aws_cdk import aws_ec2 as ec2
from constructs import Construct

from ..config import PlatformConfig
from ..constructs import ArchiveBucket, KafkaCluster, ModelArtifact
from ..constructs.archive_bucket import archive_bucket_name
from ..nag import ack, bootstrap_assets, child, logical_id, managed
from .base import PlatformStack


class DataStack(PlatformStack):
    def __init__(
        self, scope: Construct, id: str, *, config: PlatformConfig, vpc: ec2.IVpc, project_root: Path, **kwargs: Any
    ) -> None:
        super().__init__(scope, id, config=config, termination_protection=config.termination_protection, **kwargs)
        self.archive = ArchiveBucket(
            self,
            "Archive",
            bucket_name=archive_bucket_name(config.prefix),
            frames_expire_after_days=config.frames_expire_after_days,
            frames_ia_after_days=config.frames_ia_after_days,
            results_expire_after_days=config.results_expire_after_days,
            noncurrent_expire_after_days=config.noncurrent_expire_after_days,
            access_log_expire_after_days=config.access_log_expire_after_days,
            audit_reads=config.audit_archive_reads,
            audit_log_expire_after_days=config.audit_log_expire_after_days,
            trail_name=f"{config.prefix}-archive-reads",
        )
        model_dir = Path(config.model_dir)
        self.model = ModelArtifact(
            self,
            "Model",
            bucket=self.archive.bucket,
            model_dir=model_dir if model_dir.is_absolute() else project_root / model_dir,
            model_file=config.model_file,
        )
        self.kafka = KafkaCluster(
            self,
            "Kafka",
            vpc=vpc,
            cluster_name=config.kafka_cluster_name,
            kafka_version=config.kafka_version,
            brokers_per_az=config.brokers_per_az,
            instance_type=config.broker_instance_type,
            volume_gib=config.broker_volume_gib,
            server_properties=config.server_properties(),
            log_retention_days=config.broker_log_retention_days,
            removal_policy=RemovalPolicy.RETAIN,
        )
        CfnOutput(
            self, "ArchiveBucketName", value=self.archive.bucket.bucket_name, description="Archive and model bucket"
        )
        CfnOutput(
            self, "AccessLogBucketName", value=self.archive.access_logs.bucket_name, description="S3 server access logs"
        )
        CfnOutput(self, "ArchiveKeyArn", value=self.archive.key.key_arn, description="KMS key of the archive bucket")
        if self.archive.audit_logs is not None:
            CfnOutput(
                self,
                "AuditLogBucketName",
                value=self.archive.audit_logs.bucket_name,
                description="CloudTrail data events: every read of the archive",
            )
        CfnOutput(self, "KafkaClusterArn", value=self.kafka.cluster.cluster_arn, description="MSK cluster ARN")
        CfnOutput(
            self,
            "KafkaBootstrapBrokersSaslIam",
            value=self.kafka.bootstrap_brokers_sasl_iam,
            description="MSK bootstrap brokers (SASL/IAM over TLS, port 9098)",
        )
        self._acknowledge_findings()

    def _acknowledge_findings(self) -> None:
        """cdk-nag findings of this stack's own resources, each with its reason (cdk_app/nag.py)."""
        lambda_basic = managed("service-role/AWSLambdaBasicExecutionRole")
        deployment = child(self, "Custom::CDKBucketDeployment")
        ack(deployment, "AwsSolutions-IAM4", "CDK's BucketDeployment handler: CloudWatch Logs only", lambda_basic)
        ack(deployment, "AwsSolutions-L1", "CDK's BucketDeployment handler: runtime pinned by aws-cdk-lib")
        bucket = logical_id(self.archive.bucket)
        ack(
            deployment,
            "AwsSolutions-IAM5",
            "CDK's BucketDeployment grants: read the staged model asset, write it to the archive bucket",
            [f"Action::s3:{a}" for a in ("GetObject*", "GetBucket*", "List*", "DeleteObject*", "Abort*")]
            + [f"Resource::{bootstrap_assets(self)}", f"Resource::<{bucket}.Arn>/*"],
        )
        ack(
            deployment,
            "AwsSolutions-IAM5",
            "CDK's BucketDeployment grants on the archive key (SSE-KMS): the key ARN exactly, usable through S3 only",
            ["Action::kms:GenerateDataKey*", "Action::kms:ReEncrypt*"],
        )
        ack(
            child(self, "AWS679f53fac002430cb0da5b7982bd2287"),
            "AwsSolutions-IAM4",
            "CDK's AwsCustomResource handler (GetBootstrapBrokers): CloudWatch Logs only",
            lambda_basic,
        )
