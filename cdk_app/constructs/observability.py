"""Metrics, alerts and logs collected in the cloud (docs/DEPLOY.md "Metrics, alerts and logs").

- Amazon Managed Service for Prometheus: a workspace, a managed scraper (agentless: AWS runs it from network
  interfaces in the cluster's private subnets) that scrapes the app namespace's annotated pods, the alert rules
  of the committed file ALERT_RULES, and an alert manager that sends every alert to one SNS topic.
- Container logs: the EKS add-on amazon-cloudwatch-observability ships them to CloudWatch Logs, into log groups
  this construct creates first, so their retention is ours and not "never expire".

The charts admit the scraper on the ops ports (wiring metrics_scraper_cidr, cdk8s_app/network.py).
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml
from aws_cdk import Aws, RemovalPolicy
from aws_cdk import aws_aps as aps
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_eks_v2 as eks
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct, IDependable

from ..config import ConfigError
from ..retention import log_retention
from .service_identity import pod_identity_trust

# The alert rules (a Prometheus rules file), relative to the project root: a committed input of the synth.
ALERT_RULES = Path("services/deploy/vidpipe_deploy/monitoring/alerts.yaml")

# The Kubernetes user the scraper's role maps to (its access entry), and its RBAC (AMP user guide, "Configuring
# your Amazon EKS cluster" for managed collectors).
SCRAPER_USER = "aps-collector-user"
SCRAPER_CLUSTER_ROLE = "aps-collector-role"

# The add-on's agent: its ServiceAccount and namespace are fixed by the add-on.
CLOUDWATCH_ADDON = "amazon-cloudwatch-observability"
CLOUDWATCH_NAMESPACE = "amazon-cloudwatch"
CLOUDWATCH_SERVICE_ACCOUNT = "cloudwatch-agent"
# What Container Insights writes per cluster: container logs (application), node logs (host, dataplane) and
# its performance events.
CONTAINER_LOG_GROUPS = ("application", "dataplane", "host", "performance")

SCRAPE_INTERVAL = "30s"


def container_log_group_name(cluster_name: str, kind: str = "application") -> str:
    return f"/aws/containerinsights/{cluster_name}/{kind}"


def read_alert_rules(path: Path) -> str:
    """The rules file's text, as the workspace gets it; a missing or malformed file stops synth naming it."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"alert rules file {path} does not exist (vidpipe:observability needs it)") from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"alert rules file {path} is not YAML: {exc}") from None
    problems = list(_rule_file_problems(document))
    if problems:
        raise ConfigError(f"alert rules file {path} is not a Prometheus rules file:\n  " + "\n  ".join(problems))
    return text


def _rule_file_problems(document: Any) -> Iterable[str]:
    if not isinstance(document, dict) or not isinstance(document.get("groups"), list) or not document["groups"]:
        yield "expected a mapping with a non-empty list `groups`"
        return
    names: set[str] = set()
    for i, group in enumerate(document["groups"]):
        if not isinstance(group, dict) or not isinstance(group.get("name"), str) or not group["name"]:
            yield f"groups[{i}]: needs a `name`"
            continue
        if group["name"] in names:
            yield f"groups[{i}]: duplicate group name {group['name']!r}"
        names.add(group["name"])
        rules = group.get("rules")
        if not isinstance(rules, list) or not rules:
            yield f"groups[{i}] ({group['name']}): needs a non-empty list `rules`"
            continue
        for j, rule in enumerate(rules):
            if not isinstance(rule, dict) or not (rule.get("alert") or rule.get("record")) or not rule.get("expr"):
                yield f"groups[{i}].rules[{j}]: needs `alert` or `record`, and `expr`"


def scrape_configuration(namespace: str) -> str:
    """The pods of `namespace` that ask to be scraped (prometheus.io/scrape "true"), on the port and path of
    their prometheus.io/port and prometheus.io/path annotations (cdk8s_app/pods.py prometheus_annotations)."""
    config = {
        "global": {"scrape_interval": SCRAPE_INTERVAL},
        "scrape_configs": [
            {
                "job_name": "vidpipe-pods",
                "kubernetes_sd_configs": [{"role": "pod", "namespaces": {"names": [namespace]}}],
                "relabel_configs": [
                    {
                        "source_labels": ["__meta_kubernetes_pod_annotation_prometheus_io_scrape"],
                        "action": "keep",
                        "regex": "true",
                    },
                    {
                        "source_labels": ["__meta_kubernetes_pod_annotation_prometheus_io_path"],
                        "action": "replace",
                        "regex": "(.+)",
                        "target_label": "__metrics_path__",
                    },
                    {
                        "source_labels": ["__address__", "__meta_kubernetes_pod_annotation_prometheus_io_port"],
                        "action": "replace",
                        "regex": r"([^:]+)(?::\d+)?;(\d+)",
                        "replacement": "$1:$2",
                        "target_label": "__address__",
                    },
                    {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
                    {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
                    {
                        "source_labels": ["__meta_kubernetes_pod_label_app_kubernetes_io_name"],
                        "target_label": "service",
                    },
                ],
            }
        ],
    }
    return yaml.safe_dump(config, sort_keys=False)


def scraper_rbac() -> list[dict[str, Any]]:
    """The ClusterRole and binding the AMP user guide gives the scraper's user, narrowed to what the scrape
    configuration uses: pod discovery and /metrics. Its nodes/proxy and configmaps grants are left out: this
    scraper reads no kubelet or node endpoint, and nodes/proxy reaches the kubelet API."""
    labels = {"app.kubernetes.io/part-of": "vidpipe", "app.kubernetes.io/name": "aps-collector"}
    read = ["get", "list", "watch"]
    return [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": SCRAPER_CLUSTER_ROLE, "labels": labels},
            "rules": [
                {"apiGroups": [""], "resources": ["pods", "services", "endpoints"], "verbs": read},
                {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": read},
                {"nonResourceURLs": ["/metrics"], "verbs": ["get"]},
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": f"{SCRAPER_USER}-role-binding", "labels": labels},
            "subjects": [{"kind": "User", "name": SCRAPER_USER, "apiGroup": "rbac.authorization.k8s.io"}],
            "roleRef": {"kind": "ClusterRole", "name": SCRAPER_CLUSTER_ROLE, "apiGroup": "rbac.authorization.k8s.io"},
        },
    ]


def alert_manager_definition(topic_arn: str) -> str:
    """Every alert to the one SNS topic, grouped per alert and service (a token ARN is joined in at deploy)."""
    config = {
        "route": {
            "receiver": "sns",
            "group_by": ["alertname", "service"],
            "group_wait": "30s",
            "group_interval": "5m",
            "repeat_interval": "4h",
        },
        "receivers": [
            {
                "name": "sns",
                "sns_configs": [
                    {
                        "topic_arn": topic_arn,
                        "sigv4": {"region": Aws.REGION},
                        "subject": "vidpipe: {{ .CommonLabels.alertname }}",
                    }
                ],
            }
        ],
    }
    # AMP takes the Alertmanager configuration as a string under `alertmanager_config` (a literal block).
    return "alertmanager_config: |\n" + textwrap.indent(yaml.safe_dump(config, sort_keys=False), "  ")


class Observability(Construct):
    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        cluster: eks.Cluster,
        cluster_name: str,
        vpc: ec2.IVpc,
        prefix: str,
        namespace: str,
        scrape_ports: Sequence[int],
        alert_rules_file: Path,
        alert_email: str | None,
        log_retention_days: int,
        addon_after: Sequence[IDependable] = (),
    ) -> None:
        super().__init__(scope, id)
        rules = read_alert_rules(alert_rules_file)
        self.topic = self._alerts_topic(prefix, alert_email)
        # Encrypted at rest with an AWS owned key: a workspace under a customer managed key cannot take a
        # managed scraper (AMP user guide, managed collectors).
        self.workspace = aps.CfnWorkspace(
            self,
            "Workspace",
            alias=f"{prefix}-metrics",
            alert_manager_definition=alert_manager_definition(self.topic.topic_arn),
        )
        self._allow_alert_manager()
        self.rules = aps.CfnRuleGroupsNamespace(
            self, "AlertRules", name=f"{prefix}-alerts", workspace=self.workspace.attr_arn, data=rules
        )
        self.scraper = self._scraper(cluster, vpc, prefix, namespace, scrape_ports, addon_after)
        self.log_groups = {
            kind: logs.LogGroup(
                self,
                f"ContainerLogs{kind.capitalize()}",
                log_group_name=container_log_group_name(cluster_name, kind),
                retention=log_retention(log_retention_days),
                removal_policy=RemovalPolicy.DESTROY,
            )
            for kind in CONTAINER_LOG_GROUPS
        }
        self.agent_role, self.addon = self._cloudwatch_addon(cluster, addon_after)

    # --- alerts ------------------------------------------------------------------------------

    def _alerts_topic(self, prefix: str, alert_email: str | None) -> sns.Topic:
        key = kms.Key(
            self, "AlertsKey", description=f"{prefix}: encrypts the alerts SNS topic", enable_key_rotation=True
        )
        # AMP publishes as its service principal; SNS then needs the key for it. The topic policy, not the key,
        # names the one workspace that may publish.
        key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AlertManagerPublishes",
                principals=[iam.ServicePrincipal("aps.amazonaws.com")],
                actions=["kms:GenerateDataKey*", "kms:Decrypt"],
                resources=["*"],
            )
        )
        self.key = key
        topic = sns.Topic(self, "Alerts", display_name=f"{prefix} alerts", master_key=key, enforce_ssl=True)
        if alert_email:
            topic.add_subscription(subscriptions.EmailSubscription(alert_email))
        return topic

    def _allow_alert_manager(self) -> None:
        self.topic.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AlertManagerPublishes",
                principals=[iam.ServicePrincipal("aps.amazonaws.com")],
                actions=["sns:Publish", "sns:GetTopicAttributes"],
                resources=[self.topic.topic_arn],
                conditions={
                    "ArnEquals": {"aws:SourceArn": self.workspace.attr_arn},
                    "StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID},
                },
            )
        )

    # --- metrics -----------------------------------------------------------------------------

    def _scraper(
        self,
        cluster: eks.Cluster,
        vpc: ec2.IVpc,
        prefix: str,
        namespace: str,
        scrape_ports: Sequence[int],
        after: Sequence[IDependable],
    ) -> aps.CfnScraper:
        """The scraper's interfaces get a security group of their own: out to the API server (443) and the ops
        ports only, and the cluster security group (nodes, pods, control plane) admits exactly that."""
        ports = sorted({443, *scrape_ports})
        self.scraper_security_group = ec2.SecurityGroup(
            self,
            "ScraperSecurityGroup",
            vpc=vpc,
            description=f"{prefix}: AMP managed scraper to the EKS API server and the pods ops ports",
            allow_all_outbound=False,
        )
        for port in ports:
            self.scraper_security_group.add_egress_rule(
                ec2.Peer.ipv4(vpc.vpc_cidr_block),
                ec2.Port.tcp(port),
                "EKS API server" if port == 443 else "Pods ops port (/metrics)",
            )
            ec2.CfnSecurityGroupIngress(
                self,
                f"ClusterFromScraper{port}",
                group_id=cluster.cluster_security_group_id,
                source_security_group_id=self.scraper_security_group.security_group_id,
                ip_protocol="tcp",
                from_port=port,
                to_port=port,
                description="AMP managed scraper: " + ("EKS API server" if port == 443 else "pods ops port"),
            )
        private = vpc.select_subnets(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS)
        scraper = aps.CfnScraper(
            self,
            "Scraper",
            alias=f"{prefix}-scraper",
            source=aps.CfnScraper.SourceProperty(
                eks_configuration=aps.CfnScraper.EksConfigurationProperty(
                    cluster_arn=cluster.cluster_arn,
                    subnet_ids=private.subnet_ids,
                    security_group_ids=[self.scraper_security_group.security_group_id],
                )
            ),
            destination=aps.CfnScraper.DestinationProperty(
                amp_configuration=aps.CfnScraper.AmpConfigurationProperty(workspace_arn=self.workspace.attr_arn)
            ),
            # The YAML itself: CloudFormation encodes the blob for the API.
            scrape_configuration=aps.CfnScraper.ScrapeConfigurationProperty(
                configuration_blob=scrape_configuration(namespace)
            ),
        )
        for dependency in after:
            scraper.node.add_dependency(dependency)
        # The scraper's role (AMP creates it) signs in as SCRAPER_USER, whose RBAC the manifest holds.
        self.scraper_rbac = cluster.add_manifest("ScraperRbac", *scraper_rbac())
        self.scraper_access = eks.CfnAccessEntry(
            self,
            "ScraperAccess",
            cluster_name=cluster.cluster_name,
            principal_arn=scraper.attr_role_arn,
            username=SCRAPER_USER,
        )
        return scraper

    # --- logs --------------------------------------------------------------------------------

    def _cloudwatch_addon(self, cluster: eks.Cluster, after: Sequence[IDependable]) -> tuple[iam.Role, eks.CfnAddon]:
        """The add-on's agent (CloudWatch agent and Fluent Bit) runs as its own ServiceAccount, with a Pod
        Identity role for exactly that ServiceAccount; the add-on creates the association."""
        role = iam.Role(
            self,
            "CloudWatchAgentRole",
            assumed_by=pod_identity_trust(cluster, CLOUDWATCH_NAMESPACE, CLOUDWATCH_SERVICE_ACCOUNT),
            description=f"EKS Pod Identity for {CLOUDWATCH_NAMESPACE}/{CLOUDWATCH_SERVICE_ACCOUNT}",
            managed_policies=[iam.ManagedPolicy.from_aws_managed_policy_name("CloudWatchAgentServerPolicy")],
        )
        addon = eks.CfnAddon(
            self,
            "CloudWatchObservability",
            addon_name=CLOUDWATCH_ADDON,
            cluster_name=cluster.cluster_name,
            resolve_conflicts="OVERWRITE",
            configuration_values=json.dumps({"containerLogs": {"enabled": True}}),
            pod_identity_associations=[
                eks.CfnAddon.PodIdentityAssociationProperty(
                    role_arn=role.role_arn, service_account=CLOUDWATCH_SERVICE_ACCOUNT
                )
            ],
        )
        # The log groups first: otherwise the agent creates them, with no retention, and CDK cannot own them.
        for group in self.log_groups.values():
            addon.node.add_dependency(group)
        agent = cluster.eks_pod_identity_agent
        if agent is not None:
            addon.node.add_dependency(agent)
        for dependency in after:  # the add-on is healthy only once its DaemonSets have nodes
            addon.node.add_dependency(dependency)
        return role, addon
