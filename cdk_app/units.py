"""The cloud side of a service unit (vidpipe_deploy/units.py): its Pod Identity, the IAM policy its grants
declare, and the cdk-nag acknowledgement of exactly the wildcard resources those grants name.

Policy and acknowledgement come from the same grants, so a new grant either is covered by the
unit's reason or fails synth; no ARN is spelled twice.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from aws_cdk import Stack
from aws_cdk import aws_eks_v2 as eks
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from constructs import IDependable

from vidpipe_deploy import facts
from vidpipe_deploy.facts import Topics
from vidpipe_deploy.units import Grant, KafkaGrant, ObjectGrant

from .constructs import KafkaArns, ServiceIdentity
from .constructs.archive_bucket import s3_service
from .nag import ack, rendered

# S3 object actions that make S3 encrypt (write) or decrypt (read) with the bucket's KMS key.
WRITE_ACTIONS = frozenset({"s3:PutObject"})
READ_ACTIONS = frozenset({"s3:GetObject", "s3:GetObjectVersion"})


@dataclass(frozen=True)
class GrantTargets:
    """What grants resolve against: the MSK cluster (by name), the archive bucket, the topic names."""

    stack: Stack
    kafka: KafkaArns
    kafka_cluster_name: str
    bucket: s3.IBucket
    resource_prefix: str  # config.prefix: the archive bucket's name is derived from it
    topics: Topics
    # The archive bucket's KMS key (SSE-KMS): object grants come with the KMS actions S3 needs on the caller's
    # behalf, through S3 only and for this bucket only.
    archive_key_arn: str | None = None

    def _kafka_names(self, grant: KafkaGrant) -> list[tuple[str, str | None]]:
        if grant.on == "cluster":
            return [("cluster", None)]
        if grant.on == "group":
            return [("group", getattr(self.topics, grant.group))]
        return [("topic", getattr(self.topics, role)) for role in grant.topics]

    def statement(self, grant: Grant) -> iam.PolicyStatement:
        if isinstance(grant, ObjectGrant):
            resources = [self.bucket.arn_for_objects(f"{grant.prefix}*")]
        else:
            resources = [
                self.kafka.cluster if kind == "cluster" else getattr(self.kafka, kind)(name)
                for kind, name in self._kafka_names(grant)
            ]
        return iam.PolicyStatement(sid=grant.sid, actions=list(grant.actions), resources=resources)

    def key_statement(self, grants: Sequence[Grant]) -> iam.PolicyStatement | None:
        """The KMS actions the object grants need: GenerateDataKey to write (a single PutObject; multipart
        uploads would need Decrypt too), Decrypt to read. Only when S3 asks on the caller's behalf, and only
        with this bucket's encryption context (with an S3 Bucket Key, the bucket's ARN)."""
        actions: list[str] = []
        for grant in grants:
            if isinstance(grant, ObjectGrant):
                if any(a in WRITE_ACTIONS for a in grant.actions):
                    actions.append("kms:GenerateDataKey")
                if any(a in READ_ACTIONS for a in grant.actions):
                    actions.append("kms:Decrypt")
        if not actions or self.archive_key_arn is None:
            return None
        return iam.PolicyStatement(
            sid="ArchiveKeyThroughS3",
            actions=sorted(set(actions)),
            resources=[self.archive_key_arn],
            conditions={
                "StringEquals": {
                    "kms:ViaService": s3_service(),
                    "kms:EncryptionContext:aws:s3:arn": self.bucket.bucket_arn,
                }
            },
        )

    def nag_findings(self, grants: Iterable[Grant]) -> list[str]:
        """The IAM5 findings the grants raise, as cdk-nag renders the resources (all carry a wildcard)."""
        kafka = (
            f"arn:<AWS::Partition>:kafka:{rendered(self.stack.region, 'Region')}:"
            f"{rendered(self.stack.account, 'AccountId')}"
        )
        # archive_bucket_name() uses the pseudo parameters themselves, never literals.
        bucket = facts.archive_bucket_name(self.resource_prefix, "<AWS::AccountId>", "<AWS::Region>")
        findings: list[str] = []
        for grant in grants:
            if isinstance(grant, ObjectGrant):
                resources = [f"arn:<AWS::Partition>:s3:::{bucket}/{grant.prefix}*"]
            else:
                resources = [
                    f"{kafka}:{facts.kafka_resource(kind, self.kafka_cluster_name, name)}"
                    for kind, name in self._kafka_names(grant)
                ]
            findings.extend(f"Resource::{r}" for r in resources if f"Resource::{r}" not in findings)
        return findings


def deploy_identity(
    targets: GrantTargets,
    cluster: eks.Cluster,
    *,
    name: str,
    namespace: str,
    grants: Sequence[Grant],
    nag_reason: str,
    extra: Sequence[iam.PolicyStatement] = (),
    after: Sequence[IDependable] = (),
) -> ServiceIdentity:
    """ServiceAccount `name` with a Pod Identity role allowed `grants` (and `extra`, exact ARNs only)."""
    key = targets.key_statement(grants)
    identity = ServiceIdentity(
        targets.stack,
        f"Identity-{name}",
        cluster=cluster,
        name=name,
        namespace=namespace,
        statements=[*(targets.statement(g) for g in grants), *([key] if key else []), *extra],
        after=after,
    )
    findings = targets.nag_findings(grants)
    if findings:
        ack(identity.policy, "AwsSolutions-IAM5", nag_reason, findings)
    return identity
