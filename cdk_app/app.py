"""Builds the whole CDK app: the three stacks, the security gate (cdk-nag) and tags."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks

from vidpipe_deploy.registry import registered
from vidpipe_deploy.units import Services

from .checkov import suppress_findings
from .config import PlatformConfig, load_config
from .constructs.archive_bucket import archive_bucket_name
from .constructs.observability import ALERT_RULES
from .stacks import ComputeStack, DataStack, DeployAccessStack, NetworkStack

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Platform:
    config: PlatformConfig
    network: NetworkStack
    data: DataStack
    compute: ComputeStack
    deploy_access: DeployAccessStack | None  # only with vidpipe:githubRepository

    @property
    def stacks(self) -> list[cdk.Stack]:
        return [s for s in (self.network, self.data, self.compute, self.deploy_access) if s is not None]


def environment() -> cdk.Environment:
    """Account and region of the deploying credentials (CLI); both None -> environment-agnostic."""
    return cdk.Environment(account=os.environ.get("CDK_DEFAULT_ACCOUNT"), region=os.environ.get("CDK_DEFAULT_REGION"))


def build_platform(
    app: cdk.App,
    project_root: Path = PROJECT_ROOT,
    services: Services | None = None,
    alert_rules: Path | None = None,
) -> Platform:
    """services: the deployed service units (default: this tree's, vidpipe_deploy/registry.py); the charts
    take the same ones. alert_rules: the Prometheus rules file (default: the committed ALERT_RULES)."""
    services = services or registered()
    config = load_config(app.node.get_all_context())
    env = environment()
    network = NetworkStack(
        app,
        f"{config.prefix}-network",
        config=config,
        env=env,
        description="vidpipe: VPC, NAT, VPC endpoints, flow logs",
    )
    data = DataStack(
        app,
        f"{config.prefix}-data",
        config=config,
        env=env,
        vpc=network.vpc,
        project_root=project_root,
        description="vidpipe: archive bucket and MSK (retained)",
    )
    # The bucket is referenced by name (derived, not imported); the order still matters.
    compute = ComputeStack(
        app,
        f"{config.prefix}-compute",
        config=config,
        env=env,
        vpc=network.vpc,
        bucket_name=archive_bucket_name(config.prefix),
        archive_key_arn=data.archive.key.key_arn,
        kafka_bootstrap_brokers=data.kafka.bootstrap_brokers_sasl_iam,
        kafka_security_group=data.kafka.security_group,
        model_object_key=data.model.object_key,
        model_sha256=data.model.sha256,
        services_dir=project_root / "services",
        services=services,
        alert_rules_file=alert_rules or project_root / ALERT_RULES,
        description="vidpipe: EKS, identities, KEDA, images and workloads",
    )
    compute.add_stack_dependency(data, "the archive bucket and MSK must exist before the workloads")
    # The CI deploy role: independent of the platform (no references either way).
    deploy_access = None
    if config.github_repository:
        deploy_access = DeployAccessStack(
            app,
            f"{config.prefix}-deploy-access",
            env=env,
            config=config,
            description="vidpipe: GitHub Actions OIDC deploy role (bound to one repository and environment)",
        )
    for key, value in {"project": "vidpipe", "environment": config.environment}.items():
        cdk.Tags.of(app).add(key, value)
    platform = Platform(config=config, network=network, data=data, compute=compute, deploy_access=deploy_access)
    suppress_findings(app, network, data, compute)
    # Every synth runs the AwsSolutions rules; an unacknowledged finding fails it.
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    return platform
