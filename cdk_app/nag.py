"""cdk-nag (AwsSolutions) acknowledgements, each on the narrowest construct with a one-line reason.

Wildcard findings (IAM5) are acknowledged one finding at a time (`AwsSolutions-IAM5[Resource::...]`),
so a new wildcard in the same policy fails synth again.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import aws_cdk as cdk
from constructs import IConstruct

if TYPE_CHECKING:
    from .app import Platform
    from .stacks import ComputeStack, DataStack, NetworkStack


def ack(construct: IConstruct, rule: str, reason: str, findings: Iterable[str] = ()) -> None:
    """Acknowledge `rule` on `construct` (and its children); with findings, only those findings."""
    ids = [f"{rule}[{f}]" for f in findings] or [rule]
    cdk.Validations.of(construct).acknowledge(*(cdk.Acknowledgment(id=i, reason=reason) for i in ids))


def managed(*names: str) -> list[str]:
    return [f"Policy::arn:<AWS::Partition>:iam::aws:policy/{n}" for n in names]


def logical_id(construct: IConstruct) -> str:
    return cdk.Stack.of(construct).get_logical_id(construct.node.default_child)  # type: ignore[arg-type]


def rendered(value: str, pseudo: str) -> str:
    """How cdk-nag prints a stack's account or region: the literal when the CLI knows it (CDK_DEFAULT_*)."""
    return f"<AWS::{pseudo}>" if cdk.Token.is_unresolved(value) else value


def _bootstrap_assets(stack: cdk.Stack) -> str:
    """The asset bucket of the default bootstrap (`cdk bootstrap`), as cdk-nag renders it."""
    account, region = rendered(stack.account, "AccountId"), rendered(stack.region, "Region")
    return f"arn:<AWS::Partition>:s3:::cdk-hnb659fds-assets-{account}-{region}/*"


def _child(stack: cdk.Stack, prefix: str) -> IConstruct:
    """A CDK singleton (its id carries a hash), found by the start of its id."""
    for child in stack.node.children:
        if child.node.id.startswith(prefix):
            return child
    raise LookupError(f"{stack.stack_name}: no construct whose id starts with {prefix!r}")


def acknowledge_findings(platform: Platform) -> None:
    _network(platform.network)
    _data(platform.data)
    _compute(platform.compute)


def _network(stack: NetworkStack) -> None:
    for endpoint in stack.interface_endpoints.values():
        for group in endpoint.connections.security_groups:
            ack(
                group,
                "AwsSolutions-EC23",
                "Endpoint security group admits 443 from the VPC CIDR only (a Fn::GetAtt the rule cannot evaluate)",
            )


def _data(stack: DataStack) -> None:
    lambda_basic = managed("service-role/AWSLambdaBasicExecutionRole")
    deployment = _child(stack, "Custom::CDKBucketDeployment")
    ack(deployment, "AwsSolutions-IAM4", "CDK's BucketDeployment handler: CloudWatch Logs only", lambda_basic)
    ack(deployment, "AwsSolutions-L1", "CDK's BucketDeployment handler: runtime pinned by aws-cdk-lib")
    bucket = logical_id(stack.archive.bucket)
    ack(
        deployment,
        "AwsSolutions-IAM5",
        "CDK's BucketDeployment grants: read the staged model asset, write it to the archive bucket",
        [f"Action::s3:{a}" for a in ("GetObject*", "GetBucket*", "List*", "DeleteObject*", "Abort*")]
        + [f"Resource::{_bootstrap_assets(stack)}", f"Resource::<{bucket}.Arn>/*"],
    )
    ack(
        deployment,
        "AwsSolutions-IAM5",
        "CDK's BucketDeployment grants on the archive key (SSE-KMS): the key ARN exactly, usable through S3 only",
        ["Action::kms:GenerateDataKey*", "Action::kms:ReEncrypt*"],
    )
    ack(
        _child(stack, "AWS679f53fac002430cb0da5b7982bd2287"),
        "AwsSolutions-IAM4",
        "CDK's AwsCustomResource handler (GetBootstrapBrokers): CloudWatch Logs only",
        lambda_basic,
    )


def _compute(stack: ComputeStack) -> None:
    ack(
        stack.api_token,
        "AwsSolutions-SMG4",
        "The services read the token once at start-up: rotate by hand (put-secret-value, then restart the "
        "three Deployments; docs/DEPLOY.md), not on a schedule that would split them between two tokens",
    )
    cluster = stack.cluster
    ack(
        cluster.node.find_child("Role"),
        "AwsSolutions-IAM4",
        "EKS control plane role needs AmazonEKSClusterPolicy",
        managed("AmazonEKSClusterPolicy"),
    )
    for group in stack.node_groups:
        ack(
            group.role,
            "AwsSolutions-IAM4",
            "Managed node group role: the policies EKS documents for worker nodes",
            managed("AmazonEKSWorkerNodePolicy", "AmazonEKS_CNI_Policy", "AmazonEC2ContainerRegistryReadOnly"),
        )

    provider = cluster.node.find_child("KubectlProvider")
    handler = provider.node.find_child("Handler")
    ack(handler, "AwsSolutions-L1", "CDK's kubectl handler: runtime pinned by aws-cdk-lib and the kubectl layer")
    has_ecr_public = stack.get_logical_id(handler.node.find_child("HasEcrPublic"))  # type: ignore[arg-type]
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
    # The services' and KEDA's own policies are acknowledged with their units (cdk_app/units.py).
