"""Metrics, alerts and logs in the cloud: the managed Prometheus workspace and scraper, the alert rules and alert
manager (to an encrypted SNS topic), container logs with a retention, and the switch that removes them all."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.infra.cdk_support import ROOT, chart_objects, render_cfn, session_context

pytestmark = pytest.mark.infra

RULES = """\
groups:
  - name: stand-in
    rules:
      - alert: StandIn
        expr: up == 0
        for: 5m
"""
EMAIL = "ops@example.com"


def resources(template: dict, type_: str) -> dict[str, dict]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == type_}


def one(template: dict, type_: str) -> tuple[str, dict]:
    (found,) = resources(template, type_).items()
    return found


def synth_compute(tmp_path_factory, rules: Path | None = None, **context) -> dict:
    import aws_cdk as cdk

    from cdk_app.app import build_platform

    outdir = tmp_path_factory.mktemp("observability")
    app = cdk.App(context=session_context(tmp_path_factory, **context), outdir=str(outdir))
    platform = build_platform(app, alert_rules=rules)
    app.synth()  # cdk-nag included
    return json.loads((outdir / f"{platform.compute.artifact_id}.template.json").read_text())


@pytest.fixture(scope="module")
def stand_in_rules(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("rules") / "alerts.yaml"
    path.write_text(RULES)
    return path


@pytest.fixture(scope="module")
def observed(tmp_path_factory, clean_env, stand_in_rules) -> dict:
    """The compute stack with a stand-in rules file and an alert email."""
    return synth_compute(tmp_path_factory, stand_in_rules, **{"vidpipe:alertEmail": EMAIL})


@pytest.fixture(scope="module")
def switched_off(tmp_path_factory, clean_env) -> dict:
    # No rules file at all: with the switch off, synth does not read it.
    return synth_compute(tmp_path_factory, ROOT / "no-such-dir" / "alerts.yaml", **{"vidpipe:observability": False})


def test_workspace_alias_and_rules_from_the_file(observed):
    workspace_id, workspace = one(observed, "AWS::APS::Workspace")
    assert workspace["Properties"]["Alias"] == "vidpipe-dev-metrics"
    # AWS owned key (the default): a workspace under a customer key cannot take a managed scraper.
    assert "KmsKeyArn" not in workspace["Properties"]
    _, rules = one(observed, "AWS::APS::RuleGroupsNamespace")
    assert rules["Properties"]["Data"] == RULES
    assert rules["Properties"]["Workspace"] == {"Fn::GetAtt": [workspace_id, "Arn"]}


def test_the_committed_rules_file_is_loaded(compute, synth):
    template = synth.templates[synth.platform.compute.stack_name]
    _, rules = one(template, "AWS::APS::RuleGroupsNamespace")
    committed = ROOT / "services/deploy/vidpipe_deploy/monitoring/alerts.yaml"
    assert rules["Properties"]["Data"] == committed.read_text()


def test_scraper_source_destination_and_config(observed):
    workspace_id, _ = one(observed, "AWS::APS::Workspace")
    _, scraper = one(observed, "AWS::APS::Scraper")
    props = scraper["Properties"]
    assert props["Destination"] == {"AmpConfiguration": {"WorkspaceArn": {"Fn::GetAtt": [workspace_id, "Arn"]}}}
    eks = props["Source"]["EksConfiguration"]
    cluster_id = next(iter(resources(observed, "AWS::EKS::Cluster")))
    assert eks["ClusterArn"] == {"Fn::GetAtt": [cluster_id, "Arn"]}
    assert len(eks["SubnetIds"]) >= 2
    (group,) = eks["SecurityGroupIds"]
    group_id = group["Fn::GetAtt"][0]
    assert observed["Resources"][group_id]["Type"] == "AWS::EC2::SecurityGroup"
    config = yaml.safe_load(props["ScrapeConfiguration"]["ConfigurationBlob"])
    (job,) = config["scrape_configs"]
    assert job["kubernetes_sd_configs"] == [{"role": "pod", "namespaces": {"names": ["vidpipe"]}}]
    relabel = {tuple(r["source_labels"]): r for r in job["relabel_configs"]}
    keep = relabel[("__meta_kubernetes_pod_annotation_prometheus_io_scrape",)]
    assert (keep["action"], keep["regex"]) == ("keep", "true")
    assert relabel[("__meta_kubernetes_pod_annotation_prometheus_io_path",)]["target_label"] == "__metrics_path__"
    port = relabel[("__address__", "__meta_kubernetes_pod_annotation_prometheus_io_port")]
    assert port["target_label"] == "__address__"


def test_scraper_security_group_reaches_the_api_server_and_ops_ports_only(observed):
    _, scraper = one(observed, "AWS::APS::Scraper")
    group_id = scraper["Properties"]["Source"]["EksConfiguration"]["SecurityGroupIds"][0]["Fn::GetAtt"][0]
    egress = observed["Resources"][group_id]["Properties"]["SecurityGroupEgress"]
    ports = {(e["FromPort"], e["ToPort"]) for e in egress}
    assert ports == {(443, 443), (8081, 8081), (8082, 8082), (8090, 8090), (8092, 8092)}
    ingress = [
        r["Properties"]
        for r in resources(observed, "AWS::EC2::SecurityGroupIngress").values()
        if r["Properties"].get("SourceSecurityGroupId") == {"Fn::GetAtt": [group_id, "GroupId"]}
    ]
    assert {(r["FromPort"], r["ToPort"]) for r in ingress} == ports


def test_scraper_access_entry_and_rbac(observed):
    scraper_id, _ = one(observed, "AWS::APS::Scraper")
    entries = [
        e["Properties"]
        for e in resources(observed, "AWS::EKS::AccessEntry").values()
        if e["Properties"]["PrincipalArn"] == {"Fn::GetAtt": [scraper_id, "RoleArn"]}
    ]
    assert len(entries) == 1 and entries[0]["Username"] == "aps-collector-user"
    assert "AccessPolicies" not in entries[0]  # Kubernetes RBAC grants what it may do
    manifests = [
        json.loads(render_cfn(r["Properties"]["Manifest"]))
        for r in resources(observed, "Custom::AWSCDK-EKS-KubernetesResource").values()
        if "aps-collector" in render_cfn(r["Properties"]["Manifest"])
    ]
    (objects,) = manifests
    role = next(o for o in objects if o["kind"] == "ClusterRole")
    binding = next(o for o in objects if o["kind"] == "ClusterRoleBinding")
    assert binding["subjects"] == [
        {"kind": "User", "name": "aps-collector-user", "apiGroup": "rbac.authorization.k8s.io"}
    ]
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    for rule in role["rules"]:
        assert set(rule["verbs"]) <= {"get", "list", "watch"}
        assert "nodes/proxy" not in rule.get("resources", [])


def test_alert_manager_routes_to_the_encrypted_topic(observed):
    workspace_id, workspace = one(observed, "AWS::APS::Workspace")
    topic_id, topic = one(observed, "AWS::SNS::Topic")
    definition = render_cfn(workspace["Properties"]["AlertManagerDefinition"])
    config = yaml.safe_load(yaml.safe_load(definition)["alertmanager_config"])
    (receiver,) = config["receivers"]
    assert config["route"]["receiver"] == receiver["name"]
    assert "routes" not in config["route"]  # every alert goes to the one receiver
    assert receiver["sns_configs"][0]["topic_arn"] == f"<{topic_id}>"
    key = topic["Properties"]["KmsMasterKeyId"]["Fn::GetAtt"][0]
    assert observed["Resources"][key]["Type"] == "AWS::KMS::Key"
    assert observed["Resources"][key]["Properties"]["EnableKeyRotation"] is True


def test_only_the_workspace_may_publish(observed):
    workspace_id, _ = one(observed, "AWS::APS::Workspace")
    topic_id, _ = one(observed, "AWS::SNS::Topic")
    _, policy = one(observed, "AWS::SNS::TopicPolicy")
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    (allow,) = [s for s in statements if s["Effect"] == "Allow"]
    assert allow["Principal"] == {"Service": "aps.amazonaws.com"}
    assert "sns:Publish" in allow["Action"] and allow["Resource"] == {"Ref": topic_id}
    assert allow["Condition"]["ArnEquals"] == {"aws:SourceArn": {"Fn::GetAtt": [workspace_id, "Arn"]}}
    assert any(
        s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}} for s in statements
    )


def test_email_subscription_only_when_configured(observed, synth):
    _, subscription = one(observed, "AWS::SNS::Subscription")
    assert subscription["Properties"]["Protocol"] == "email"
    assert subscription["Properties"]["Endpoint"] == EMAIL
    default = synth.templates[synth.platform.compute.stack_name]
    assert not resources(default, "AWS::SNS::Subscription")
    assert resources(default, "AWS::APS::Scraper")  # on by default


def test_container_logs_have_a_retention_and_come_first(observed):
    groups = {g["Properties"]["LogGroupName"]: (k, g) for k, g in resources(observed, "AWS::Logs::LogGroup").items()}
    application = groups["/aws/containerinsights/vidpipe-dev/application"]
    assert application[1]["Properties"]["RetentionInDays"] == 30
    addon_id, addon = next(
        (k, a)
        for k, a in resources(observed, "AWS::EKS::Addon").items()
        if a["Properties"]["AddonName"] == "amazon-cloudwatch-observability"
    )
    owned = [k for name, (k, _) in groups.items() if name.startswith("/aws/containerinsights/vidpipe-dev/")]
    assert application[0] in owned and set(owned) <= set(addon["DependsOn"])


def test_container_log_retention_from_context(tmp_path_factory, clean_env, stand_in_rules):
    template = synth_compute(tmp_path_factory, stand_in_rules, **{"vidpipe:containerLogRetentionDays": 7})
    retention = {
        g["Properties"]["LogGroupName"]: g["Properties"]["RetentionInDays"]
        for g in resources(template, "AWS::Logs::LogGroup").values()
    }
    assert retention["/aws/containerinsights/vidpipe-dev/application"] == 7


def test_cloudwatch_agent_pod_identity(observed):
    addon = next(
        a
        for a in resources(observed, "AWS::EKS::Addon").values()
        if a["Properties"]["AddonName"] == "amazon-cloudwatch-observability"
    )
    (association,) = addon["Properties"]["PodIdentityAssociations"]
    assert association["ServiceAccount"] == "cloudwatch-agent"
    role = observed["Resources"][association["RoleArn"]["Fn::GetAtt"][0]]["Properties"]
    assert [render_cfn(arn) for arn in role["ManagedPolicyArns"]] == [
        "arn:<AWS::Partition>:iam::aws:policy/CloudWatchAgentServerPolicy"
    ]
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "pods.eks.amazonaws.com"}
    assert trust["Condition"]["StringEquals"]["aws:RequestTag/kubernetes-namespace"] == "amazon-cloudwatch"
    assert trust["Condition"]["StringEquals"]["aws:RequestTag/kubernetes-service-account"] == "cloudwatch-agent"


def test_network_policies_admit_the_vpc_on_the_ops_ports(observed):
    """The charts the stack applies: each service's ops port open to the VPC CIDR (the scraper's ENIs)."""
    policies = {o["metadata"]["name"]: o for o in chart_objects(observed) if o["kind"] == "NetworkPolicy"}
    scraper = {name: p for name, p in policies.items() if name.endswith("-metrics-scraper")}
    assert len(scraper) == 4
    for policy in scraper.values():
        (rule,) = policy["spec"]["ingress"]
        (peer,) = rule["from"]
        assert peer["ipBlock"]["cidr"].startswith("<import:vidpipe-dev-network:")
        assert [p["port"] for p in rule["ports"]] in ([8081], [8082], [8090], [8092])


def test_switch_off_removes_it_all(switched_off):
    for type_ in (
        "AWS::APS::Workspace",
        "AWS::APS::Scraper",
        "AWS::APS::RuleGroupsNamespace",
        "AWS::SNS::Topic",
        "AWS::Logs::LogGroup",
    ):
        assert not resources(switched_off, type_), type_
    addons = {a["Properties"]["AddonName"] for a in resources(switched_off, "AWS::EKS::Addon").values()}
    assert "amazon-cloudwatch-observability" not in addons
    names = {o["metadata"]["name"] for o in chart_objects(switched_off) if o["kind"] == "NetworkPolicy"}
    assert not any(n.endswith("-metrics-scraper") for n in names)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (None, "does not exist"),
        ("groups: [", "is not YAML"),
        ("groups: []\n", "non-empty list `groups`"),
        ("groups:\n  - name: a\n    rules:\n      - alert: X\n", "needs `alert` or `record`, and `expr`"),
    ],
)
def test_a_missing_or_invalid_rules_file_stops_synth(tmp_path, text, problem):
    from cdk_app.config import ConfigError
    from cdk_app.constructs.observability import read_alert_rules

    path = tmp_path / "alerts.yaml"
    if text is not None:
        path.write_text(text)
    with pytest.raises(ConfigError, match=problem) as raised:
        read_alert_rules(path)
    assert str(path) in str(raised.value)


def test_context_keys_are_validated():
    from cdk_app.config import ConfigError, load_config
    from tests.infra.cdk_support import user_context

    assert load_config(user_context()).observability is True
    assert load_config(user_context(**{"vidpipe:alertEmail": ""})).alert_email is None
    assert load_config(user_context(**{"vidpipe:observability": "false"})).observability is False
    with pytest.raises(ConfigError, match="vidpipe:alertEmail.*not an email address"):
        load_config(user_context(**{"vidpipe:alertEmail": "ops at example"}))
    with pytest.raises(ConfigError, match="vidpipe:containerLogRetentionDays.*not a CloudWatch Logs retention"):
        load_config(user_context(**{"vidpipe:containerLogRetentionDays": 10}))
