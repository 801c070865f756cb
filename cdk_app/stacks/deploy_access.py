"""The IAM role GitHub Actions assumes to deploy (OIDC: no stored keys), bound to one repository and one
GitHub environment, with only what `cdk deploy` and the workflow's cluster check need.

Deployed once by hand with admin credentials (the workflow cannot create the role it assumes), and only
present in the app when `vidpipe:githubRepository` is set: see docs/DEPLOY.md "CI/CD".
"""

from __future__ import annotations

from typing import Any

from aws_cdk import Aws, CfnOutput, DefaultStackSynthesizer, Duration, Stack
from aws_cdk import aws_iam as iam
from constructs import Construct

from ..config import PlatformConfig

GITHUB_OIDC_HOST = "token.actions.githubusercontent.com"
GITHUB_OIDC_URL = f"https://{GITHUB_OIDC_HOST}"
STS_AUDIENCE = "sts.amazonaws.com"
# The roles `cdk bootstrap` creates; the CLI assumes them to publish assets and run CloudFormation.
BOOTSTRAP_ROLES = ("deploy", "file-publishing", "image-publishing", "lookup")
QUALIFIER_CONTEXT = "@aws-cdk/core:bootstrapQualifier"


def github_subject(repository: str, environment: str) -> str:
    """The token's `sub` for a job that runs in a GitHub environment (GitHub's default claim template)."""
    return f"repo:{repository}:environment:{environment}"


class DeployAccessStack(Stack):
    def __init__(self, scope: Construct, id: str, *, config: PlatformConfig, **kwargs: Any) -> None:
        super().__init__(scope, id, **kwargs)
        if config.github_repository is None:
            raise ValueError("DeployAccessStack needs vidpipe:githubRepository")
        self.config = config
        if config.github_oidc_provider_arn:
            # One provider per URL per account: reuse the account's existing one.
            self.oidc_provider_arn = config.github_oidc_provider_arn
            self.oidc_provider: iam.OidcProviderNative | None = None
        else:
            self.oidc_provider = iam.OidcProviderNative(
                self, "GitHubOidcProvider", url=GITHUB_OIDC_URL, client_ids=[STS_AUDIENCE]
            )
            self.oidc_provider_arn = self.oidc_provider.oidc_provider_arn

        self.subject = github_subject(config.github_repository, config.github_environment)
        self.role = iam.Role(
            self,
            "DeployRole",
            role_name=f"{config.prefix}-github-deploy",
            description=f"GitHub Actions deploy of {config.prefix}: {self.subject}",
            # Only this repository's jobs in this environment; a fork or another branch's job has another sub.
            assumed_by=iam.WebIdentityPrincipal(
                self.oidc_provider_arn,
                conditions={
                    "StringEquals": {f"{GITHUB_OIDC_HOST}:aud": STS_AUDIENCE, f"{GITHUB_OIDC_HOST}:sub": self.subject}
                },
            ),
            # A first deploy (MSK 25-40 min, EKS ~15 min) outlasts the 1-hour default.
            max_session_duration=Duration.hours(2),
        )
        qualifier = self.node.try_get_context(QUALIFIER_CONTEXT) or DefaultStackSynthesizer.DEFAULT_QUALIFIER
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="AssumeCdkBootstrapRoles",
                actions=["sts:AssumeRole", "sts:TagSession"],
                resources=[
                    f"arn:{Aws.PARTITION}:iam::{Aws.ACCOUNT_ID}:role/cdk-{qualifier}-{name}-role-{Aws.ACCOUNT_ID}-{Aws.REGION}"
                    for name in BOOTSTRAP_ROLES
                ],
            )
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="CheckCluster",
                actions=["eks:DescribeCluster"],
                resources=[self.format_arn(service="eks", resource="cluster", resource_name=config.prefix)],
            )
        )
        CfnOutput(
            self,
            "DeployRoleArn",
            value=self.role.role_arn,
            description="GitHub repository variable AWS_DEPLOY_ROLE_ARN",
        )
        CfnOutput(self, "TrustedSubject", value=self.subject, description="The only OIDC subject the role trusts")
