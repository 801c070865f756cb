"""The archive bucket: frames and results under archive/, models under models/."""

from __future__ import annotations

from aws_cdk import Aws, Duration, RemovalPolicy
from aws_cdk import aws_s3 as s3
from constructs import Construct

from cdk8s_app import facts
from cdk8s_app.facts import ARCHIVE_PREFIX, FRAMES_PREFIX, MODELS_PREFIX, RESULTS_PREFIX  # noqa: F401


def archive_bucket_name(prefix: str) -> str:
    """Unique per environment, account and region; other stacks derive it instead of importing it,
    so no CloudFormation export pins the data stack."""
    return facts.archive_bucket_name(prefix, Aws.ACCOUNT_ID, Aws.REGION)


class ArchiveBucket(Construct):
    """Private, SSL-only, versioned bucket with lifecycle rules and access logs in a second bucket.

    S3-managed keys: the access-log target cannot use SSE-KMS, and SSE-S3 keeps the pods' policies
    free of KMS grants. Both buckets are retained when the stack is deleted.
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        bucket_name: str,
        frames_ia_after_days: int,
        frames_expire_after_days: int,
        results_expire_after_days: int,
        noncurrent_expire_after_days: int,
        access_log_expire_after_days: int,
    ) -> None:
        super().__init__(scope, id)
        common = dict(
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            removal_policy=RemovalPolicy.RETAIN,
        )
        self.access_logs = s3.Bucket(
            self,
            "AccessLogs",
            **common,
            lifecycle_rules=[
                s3.LifecycleRule(id="expire-access-logs", expiration=Duration.days(access_log_expire_after_days))
            ],
        )
        self.bucket = s3.Bucket(
            self,
            "Bucket",
            **common,
            bucket_name=bucket_name,
            versioned=True,
            server_access_logs_bucket=self.access_logs,
            server_access_logs_prefix="archive-bucket/",
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="frames",
                    prefix=FRAMES_PREFIX,
                    transitions=[
                        s3.Transition(
                            storage_class=s3.StorageClass.INFREQUENT_ACCESS,
                            transition_after=Duration.days(frames_ia_after_days),
                        )
                    ],
                    expiration=Duration.days(frames_expire_after_days),
                ),
                s3.LifecycleRule(
                    id="results", prefix=RESULTS_PREFIX, expiration=Duration.days(results_expire_after_days)
                ),
                s3.LifecycleRule(
                    id="noncurrent-and-incomplete",
                    noncurrent_version_expiration=Duration.days(noncurrent_expire_after_days),
                    abort_incomplete_multipart_upload_after=Duration.days(7),
                ),
            ],
        )
