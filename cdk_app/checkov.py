"""checkov (`make checkov`) suppressions for the CloudFormation templates, each on its resource with a reason.

checkov reads `Metadata: {checkov: {skip: [{id, comment}]}}` on a resource. Every remaining finding of the
synthesized templates is suppressed here, on the narrowest resource, with why; anything new fails
`make checkov`. The Kubernetes manifests carry theirs as annotations (cdk8s_app/pods.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import aws_cdk as cdk
import jsii
from constructs import IConstruct

if TYPE_CHECKING:
    from .stacks import ComputeStack, DataStack, NetworkStack

METADATA_KEY = "checkov"

# CDK's own deploy-time handlers (custom resources: bucket deployment, kubectl, GetBootstrapBrokers, the
# default-security-group restriction). The app defines no Lambda function of its own.
LAMBDA_REASONS = {
    "CKV_AWS_115": "CDK's deploy-time custom resource handler, invoked only by CloudFormation during a deploy: "
    "a reserved-concurrency limit protects nothing",
    "CKV_AWS_116": "CDK's custom resource handler: a failed invocation fails the CloudFormation operation that "
    "made it, where it is seen; a dead-letter queue would hold events nobody replays",
}
LAMBDA_OUTSIDE_VPC = (
    "CKV_AWS_117",
    "CDK's custom resource handler calls only AWS APIs at deploy time (S3, EC2, MSK): outside the VPC it needs "
    "no NAT path or endpoint, and reaches nothing inside the VPC",
)
LAMBDA_ENVIRONMENT = (
    "CKV_AWS_173",
    "CDK's handler environment holds names and flags set by CDK, no secret; Lambda encrypts it at rest with "
    "its service key",
)


def skip(construct: IConstruct, check_id: str, reason: str) -> None:
    """Suppress `check_id` on `construct`'s CloudFormation resource (itself or its default child)."""
    if not reason.strip() or "\n" in reason:
        raise ValueError(f"{check_id}: a checkov skip needs a one-line reason")
    resource = construct if isinstance(construct, cdk.CfnResource) else construct.node.default_child
    if not isinstance(resource, cdk.CfnResource):
        raise TypeError(f"{construct.node.path}: no CloudFormation resource to put a checkov skip on")
    entries = list((resource.get_metadata(METADATA_KEY) or {}).get("skip", []))
    if any(e["id"] == check_id for e in entries):
        return
    resource.add_metadata(METADATA_KEY, {"skip": [*entries, {"id": check_id, "comment": reason}]})


def skips_of(template: dict[str, Any]) -> dict[str, list[dict[str, str]]]:
    """logical id -> its checkov skips, from a synthesized template."""
    return {
        logical_id: resource["Metadata"][METADATA_KEY]["skip"]
        for logical_id, resource in template.get("Resources", {}).items()
        if METADATA_KEY in resource.get("Metadata", {})
    }


@jsii.implements(cdk.IAspect)
class LambdaHandlerSkips:
    """The checks every CDK handler fails, on each AWS::Lambda::Function: 117 only for those outside a VPC,
    173 only for those with an environment (the kubectl handlers are in the VPC; some have no variables)."""

    def visit(self, node: IConstruct) -> None:
        if not (isinstance(node, cdk.CfnResource) and node.cfn_resource_type == "AWS::Lambda::Function"):
            return
        # CfnFunction (L1) or a raw CfnResource (CDK's CustomResourceProvider): camelCase or CloudFormation keys.
        properties = {key.lower(): value for key, value in (node._cfn_properties or {}).items()}
        for check_id, reason in LAMBDA_REASONS.items():
            skip(node, check_id, reason)
        stack = cdk.Stack.of(node)
        if not stack.resolve(properties.get("vpcconfig")):
            skip(node, *LAMBDA_OUTSIDE_VPC)
        # An empty environment (no variables) is left out of the template: checkov sees none.
        environment = stack.resolve(properties.get("environment")) or {}
        if environment.get("variables") or environment.get("Variables"):
            skip(node, *LAMBDA_ENVIRONMENT)


def suppress_findings(app: cdk.App, network: NetworkStack, data: DataStack, compute: ComputeStack) -> None:
    """The reasoned suppressions of the app's own resources; the handlers' through the aspect."""
    cdk.Aspects.of(app).add(LambdaHandlerSkips())
    skip(
        network.node.find_child("FlowLogs"),
        "CKV_AWS_158",
        "VPC flow logs (addresses, ports, verdicts; no footage, no credentials): CloudWatch Logs encrypts them "
        "at rest; a customer key would add a key policy without narrowing who reads them",
    )
    archive = data.archive
    skip(
        archive.access_logs,
        "CKV_AWS_18",
        "This is the access-log bucket: logging its own access into itself or a third bucket would recurse",
    )
    skip(
        archive.access_logs,
        "CKV_AWS_21",
        "S3's log delivery writes each access-log object once and the lifecycle expires it: versions would only "
        "keep expired logs longer",
    )
    skip(
        data.kafka.log_group,
        "CKV_AWS_158",
        "MSK broker logs (broker events, no records): CloudWatch Logs encrypts them at rest; a customer key would "
        "add a key policy without narrowing who reads them",
    )
    skip(
        compute.api_token,
        "CKV_AWS_149",
        "Encrypted with the AWS managed key aws/secretsmanager; only the pod roles that check or send it may read it "
        "(IAM), which a customer key would not narrow further",
    )
    if compute.observability is not None:
        for group in compute.observability.log_groups.values():
            skip(
                group,
                "CKV_AWS_158",
                "Container and node logs (the services log no frames and no credentials): CloudWatch Logs "
                "encrypts them at rest; a customer key would add a key policy without narrowing who reads them",
            )
    if archive.trail is not None and archive.audit_logs is not None:
        skip(
            archive.trail,
            "CKV_AWS_35",
            "The trail's bucket uses SSE-S3 and admits CloudTrail and the account only; its objects name who read "
            "which frame, not the frames",
        )
        skip(
            archive.trail,
            "CKV_AWS_67",
            "It records the reads of one bucket, which lives in this region; the account's management-event "
            "trail (all regions) is the account's, not this app's",
        )
