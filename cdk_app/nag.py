"""cdk-nag (AwsSolutions) acknowledgements, each on the narrowest construct with a one-line reason.

Wildcard findings (IAM5) are acknowledged one finding at a time (`AwsSolutions-IAM5[Resource::...]`),
so a new wildcard in the same policy fails synth again. Each stack acknowledges its own findings (its
`_acknowledge_findings`), and each service unit's policy its own (cdk_app/units.py); these are the helpers.
"""

from __future__ import annotations

from collections.abc import Iterable

import aws_cdk as cdk
from constructs import IConstruct


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


def bootstrap_assets(stack: cdk.Stack) -> str:
    """The asset bucket of the default bootstrap (`cdk bootstrap`), as cdk-nag renders it."""
    account, region = rendered(stack.account, "AccountId"), rendered(stack.region, "Region")
    return f"arn:<AWS::Partition>:s3:::cdk-hnb659fds-assets-{account}-{region}/*"


def child(stack: cdk.Stack, prefix: str) -> IConstruct:
    """A CDK singleton (its id carries a hash), found by the start of its id."""
    for child in stack.node.children:
        if child.node.id.startswith(prefix):
            return child
    raise LookupError(f"{stack.stack_name}: no construct whose id starts with {prefix!r}")
