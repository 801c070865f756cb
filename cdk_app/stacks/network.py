"""VPC across AZs: public subnets for NAT, private subnets for nodes and brokers, endpoints, flow logs."""

from __future__ import annotations

from typing import Any

from aws_cdk import Aws, CfnOutput, Fn, RemovalPolicy
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from constructs import Construct

from vidpipe_deploy.facts import OutputKeys

from ..config import PlatformConfig
from ..constructs.archive_bucket import archive_bucket_name
from ..nag import ack
from ..retention import log_retention
from .base import PlatformStack

# Interface endpoints (private DNS): what the pods and nodes call besides S3, kept off the NAT gateway.
# Secrets Manager: the API token and camera URLs; STS: the SDKs' regional calls; ECR: image pulls.
INTERFACE_ENDPOINTS = {
    "Ecr": ec2.InterfaceVpcEndpointAwsService.ECR,
    "EcrDocker": ec2.InterfaceVpcEndpointAwsService.ECR_DOCKER,
    "Sts": ec2.InterfaceVpcEndpointAwsService.STS,
    "Logs": ec2.InterfaceVpcEndpointAwsService.CLOUDWATCH_LOGS,
    "SecretsManager": ec2.InterfaceVpcEndpointAwsService.SECRETS_MANAGER,
}


def s3_endpoint_statements(bucket_arn: str) -> list[iam.PolicyStatement]:
    """What may pass the S3 endpoint(s): this deployment's archive bucket (what the services do, and erasure:
    `python -m tools.erase` lists and deletes versions), and the two AWS-owned buckets the VPC's own machinery
    needs. Any other bucket (someone else's included) is unreachable from the VPC over it. IAM still decides
    who may do what; this is the boundary.

    - ECR keeps image layers in `prod-<region>-starport-layer-bucket` and hands the nodes presigned URLs
      (Amazon ECR user guide, "Minimum Amazon S3 bucket permissions for Amazon ECR").
    - Custom resources whose handlers run in the VPC (the kubectl provider) answer CloudFormation with a
      presigned PUT to `cloudformation-custom-resource-response-<region without dashes>`.
    """
    region_without_dashes = Fn.join("", Fn.split("-", Aws.REGION))
    anyone = [iam.AnyPrincipal()]
    return [
        iam.PolicyStatement(
            sid="ArchiveBucket",
            principals=anyone,
            actions=[
                "s3:GetObject",
                "s3:PutObject",
                "s3:ListBucket",
                "s3:GetBucketLocation",
                "s3:ListBucketVersions",
                "s3:DeleteObject",
                "s3:DeleteObjectVersion",
            ],
            resources=[bucket_arn, f"{bucket_arn}/*"],
        ),
        iam.PolicyStatement(
            sid="EcrImageLayers",
            principals=anyone,
            actions=["s3:GetObject"],
            resources=[f"arn:{Aws.PARTITION}:s3:::prod-{Aws.REGION}-starport-layer-bucket/*"],
        ),
        iam.PolicyStatement(
            sid="CloudFormationCustomResourceResponses",
            principals=anyone,
            actions=["s3:PutObject"],
            resources=[f"arn:{Aws.PARTITION}:s3:::cloudformation-custom-resource-response-{region_without_dashes}/*"],
        ),
    ]


class NetworkStack(PlatformStack):
    def __init__(self, scope: Construct, id: str, *, config: PlatformConfig, **kwargs: Any) -> None:
        super().__init__(scope, id, config=config, **kwargs)
        self.vpc = ec2.Vpc(
            self,
            "Vpc",
            ip_addresses=ec2.IpAddresses.cidr(config.vpc_cidr),
            max_azs=config.max_azs,
            nat_gateways=config.nat_gateways,
            subnet_configuration=[
                ec2.SubnetConfiguration(name="public", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=24),
                # /19: room for VPC CNI pod IPs (one per pod) next to nodes and brokers.
                ec2.SubnetConfiguration(name="private", subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS, cidr_mask=19),
            ],
            restrict_default_security_group=True,
        )
        flow_logs = logs.LogGroup(
            self,
            "FlowLogs",
            retention=log_retention(config.flow_log_retention_days),
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.vpc.add_flow_log("FlowLog", destination=ec2.FlowLogDestination.to_cloud_watch_logs(flow_logs))

        private = ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS)
        bucket_arn = f"arn:{Aws.PARTITION}:s3:::{archive_bucket_name(config.prefix)}"
        # Image pulls and S3 traffic stay off the NAT gateway (S3 is a free gateway endpoint).
        self.s3_endpoint = self.vpc.add_gateway_endpoint(
            "S3", service=ec2.GatewayVpcEndpointAwsService.S3, subnets=[private]
        )
        for statement in s3_endpoint_statements(bucket_arn):
            self.s3_endpoint.add_to_policy(statement)

        endpoints = dict(INTERFACE_ENDPOINTS)
        if config.s3_interface_endpoint:
            endpoints["S3Interface"] = ec2.InterfaceVpcEndpointAwsService.S3
        self.interface_endpoints: dict[str, ec2.InterfaceVpcEndpoint] = {}
        for name, service in endpoints.items():
            # Endpoints only answer: their security group admits HTTPS from the VPC and sends nothing.
            group = ec2.SecurityGroup(
                self,
                f"{name}EndpointSecurityGroup",
                vpc=self.vpc,
                description=f"{name} VPC endpoint: HTTPS from the VPC",
                allow_all_outbound=False,
            )
            group.add_ingress_rule(ec2.Peer.ipv4(self.vpc.vpc_cidr_block), ec2.Port.tcp(443), "HTTPS from the VPC")
            self.interface_endpoints[name] = self.vpc.add_interface_endpoint(
                name,
                service=service,
                subnets=private,
                private_dns_enabled=True,
                security_groups=[group],
                # S3 beside its gateway endpoint: resolve S3 to the interface endpoint inside the VPC too.
                **(
                    {
                        "private_dns_only_for_inbound_resolver_endpoint": (
                            ec2.VpcEndpointPrivateDnsOnlyForInboundResolverEndpoint.ALL_RESOLVERS
                        )
                    }
                    if name == "S3Interface"
                    else {}
                ),
            )
        if "S3Interface" in self.interface_endpoints:
            for statement in s3_endpoint_statements(bucket_arn):
                self.interface_endpoints["S3Interface"].add_to_policy(statement)
        # The charts' NetworkPolicies open HTTPS to the interface endpoints at this range (standalone path).
        CfnOutput(self, OutputKeys.VPC_CIDR, value=self.vpc.vpc_cidr_block, description="VPC CIDR (NetworkPolicies)")
        self._acknowledge_findings()

    def _acknowledge_findings(self) -> None:
        """cdk-nag findings of this stack's own resources, each with its reason (cdk_app/nag.py)."""
        for endpoint in self.interface_endpoints.values():
            for group in endpoint.connections.security_groups:
                ack(
                    group,
                    "AwsSolutions-EC23",
                    "Endpoint security group admits 443 from the VPC CIDR only (a Fn::GetAtt the rule cannot evaluate)",
                )
