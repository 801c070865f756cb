"""The archive bucket: frames and results under archive/, models under models/; its KMS key; optionally a trail
of every read."""

from __future__ import annotations

from aws_cdk import Aws, Duration, RemovalPolicy
from aws_cdk import aws_cloudtrail as cloudtrail
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from vidpipe_deploy import facts
from vidpipe_deploy.facts import ARCHIVE_PREFIX, FRAMES_PREFIX, MODELS_PREFIX, RESULTS_PREFIX  # noqa: F401

# What S3 asks of the key with SSE-KMS: the pods' grants (cdk_app/units.py) allow these through S3 only.
KEY_CRYPTO_ACTIONS = ("kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*")


def archive_bucket_name(prefix: str) -> str:
    """Unique per environment, account and region; other stacks derive it instead of importing it,
    so no CloudFormation export pins the data stack."""
    return facts.archive_bucket_name(prefix, Aws.ACCOUNT_ID, Aws.REGION)


def s3_service() -> str:
    """kms:ViaService of a request S3 makes to KMS on the caller's behalf, in this stack's region."""
    return f"s3.{Aws.REGION}.amazonaws.com"


def archive_key_policy() -> iam.PolicyDocument:
    """The account administers the key and delegates its use to IAM policies (the pods' roles name exactly
    what they may do); nobody may use it except through S3, so every read of footage is an S3 request
    (access logs, and CloudTrail data events with auditArchiveReads)."""
    return iam.PolicyDocument(
        statements=[
            iam.PolicyStatement(
                sid="AccountAdministersAndDelegatesToIam",
                principals=[iam.AccountRootPrincipal()],
                actions=["kms:*"],
                resources=["*"],
            ),
            iam.PolicyStatement(
                sid="CryptoOnlyThroughS3",
                effect=iam.Effect.DENY,
                principals=[iam.AnyPrincipal()],
                actions=list(KEY_CRYPTO_ACTIONS),
                resources=["*"],
                conditions={"StringNotEquals": {"kms:ViaService": s3_service()}},
            ),
        ]
    )


class ArchiveBucket(Construct):
    """Private, SSL-only, versioned bucket encrypted with its own KMS key, lifecycle rules, access logs in a
    second bucket.

    The archive uses SSE-KMS with a customer managed key (rotated yearly, policy above) and an S3 Bucket Key,
    so S3 asks KMS for a data key about once per bucket key lifetime rather than once per frame. The access-log
    bucket keeps SSE-S3: S3 server access logging cannot deliver to an SSE-KMS bucket. Buckets and key are
    retained when the stack is deleted.

    Retention: frames and results expire after their own number of days; an expired (or deleted) object's
    last version is removed `noncurrent_expire_after_days` later, the delete markers after that.
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        bucket_name: str,
        frames_expire_after_days: int,
        frames_ia_after_days: int | None,
        results_expire_after_days: int,
        noncurrent_expire_after_days: int,
        access_log_expire_after_days: int,
        audit_reads: bool = False,
        audit_log_expire_after_days: int = 365,
        trail_name: str | None = None,
    ) -> None:
        super().__init__(scope, id)
        common = dict(
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            removal_policy=RemovalPolicy.RETAIN,
        )
        self.access_logs = s3.Bucket(
            self,
            "AccessLogs",
            **common,
            encryption=s3.BucketEncryption.S3_MANAGED,
            lifecycle_rules=[
                s3.LifecycleRule(id="expire-access-logs", expiration=Duration.days(access_log_expire_after_days))
            ],
        )
        self.key = kms.Key(
            self,
            "Key",
            description=f"{bucket_name}: archived frames, results and models (SSE-KMS)",
            enable_key_rotation=True,
            policy=archive_key_policy(),
            removal_policy=RemovalPolicy.RETAIN,
        )
        transitions = (
            [
                s3.Transition(
                    storage_class=s3.StorageClass.INFREQUENT_ACCESS,
                    transition_after=Duration.days(frames_ia_after_days),
                )
            ]
            if frames_ia_after_days is not None
            else None
        )
        self.bucket = s3.Bucket(
            self,
            "Bucket",
            **common,
            bucket_name=bucket_name,
            encryption=s3.BucketEncryption.KMS,
            encryption_key=self.key,
            bucket_key_enabled=True,
            versioned=True,
            server_access_logs_bucket=self.access_logs,
            server_access_logs_prefix="archive-bucket/",
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="frames",
                    prefix=FRAMES_PREFIX,
                    transitions=transitions,
                    expiration=Duration.days(frames_expire_after_days),
                ),
                s3.LifecycleRule(
                    id="results", prefix=RESULTS_PREFIX, expiration=Duration.days(results_expire_after_days)
                ),
                s3.LifecycleRule(
                    id="noncurrent-and-incomplete",
                    noncurrent_version_expiration=Duration.days(noncurrent_expire_after_days),
                    abort_incomplete_multipart_upload_after=Duration.days(1),
                ),
                # A delete marker with no version left behind it is removed too (separate rule: S3 refuses it
                # beside a noncurrent expiration in one rule's Expiration).
                s3.LifecycleRule(id="expired-delete-markers", expired_object_delete_marker=True),
            ],
        )
        self.audit_logs: s3.Bucket | None = None
        self.trail: cloudtrail.Trail | None = None
        if audit_reads:
            self._audit_reads(common, audit_log_expire_after_days, trail_name)

    def _audit_reads(self, common: dict, expire_after_days: int, trail_name: str | None) -> None:
        """A single-region trail of the archive's read-only S3 data events (GetObject, HeadObject...), nothing
        else: no management events, no writes (the consumer writes every frame; reads are the rarer, telling
        events). Its bucket: SSE-S3, access-logged, expiring."""
        self.audit_logs = s3.Bucket(
            self,
            "AuditLogs",
            **common,
            encryption=s3.BucketEncryption.S3_MANAGED,
            versioned=True,
            server_access_logs_bucket=self.access_logs,
            server_access_logs_prefix="audit-logs/",
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="expire-audit-logs",
                    expiration=Duration.days(expire_after_days),
                    noncurrent_version_expiration=Duration.days(1),
                )
            ],
        )
        self.trail = cloudtrail.Trail(
            self,
            "ReadTrail",
            trail_name=trail_name,
            bucket=self.audit_logs,
            is_multi_region_trail=False,
            include_global_service_events=False,
            management_events=cloudtrail.ReadWriteType.NONE,
            enable_file_validation=True,
        )
        self.trail.add_s3_event_selector(
            [cloudtrail.S3EventSelector(bucket=self.bucket, object_prefix=ARCHIVE_PREFIX)],
            read_write_type=cloudtrail.ReadWriteType.READ_ONLY,
            include_management_events=False,
        )
