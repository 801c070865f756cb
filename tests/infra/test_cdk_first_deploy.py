"""What a first deploy needs to work and stay safe: an admin access entry for the user, a Kubernetes version
in standard support that cannot slide into extended support, a private API endpoint unless the user
opens it to named CIDRs, nodes that keep their credentials from pods, and the cross-stack exports the
docs describe."""

from __future__ import annotations

import ipaddress
import json
import re

import pytest
from aws_cdk.assertions import Match

from tests.infra.cdk_support import TEST_ADMIN_PRINCIPAL, session_context

pytestmark = pytest.mark.infra

ADMIN_POLICY = "AmazonEKSClusterAdminPolicy"


def resources(template: dict, type_: str) -> dict[str, dict]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == type_}


def compute_template(synth) -> dict:
    return synth.templates[synth.platform.compute.stack_name]


def synth_compute(tmp_path_factory, **overrides) -> dict:
    """Another app with other context (the session's app stays as it is); ~1 s in the same process."""
    import aws_cdk as cdk

    from cdk_app.app import build_platform

    outdir = tmp_path_factory.mktemp("variant")
    app = cdk.App(context=session_context(tmp_path_factory, **overrides), outdir=str(outdir))
    platform = build_platform(app)
    app.synth()
    return json.loads((outdir / f"{platform.compute.artifact_id}.template.json").read_text())


# --- who can use kubectl ----------------------------------------------------------------------


def test_configured_principal_gets_cluster_admin_at_cluster_scope(synth):
    entries = resources(compute_template(synth), "AWS::EKS::AccessEntry")
    (admin,) = [e["Properties"] for e in entries.values() if e["Properties"]["PrincipalArn"] == TEST_ADMIN_PRINCIPAL]
    (policy,) = admin["AccessPolicies"]
    assert policy["AccessScope"] == {"Type": "cluster"}
    assert json.dumps(policy["PolicyArn"]).endswith(f':eks::aws:cluster-access-policy/{ADMIN_POLICY}"]]}}')
    assert "Type" not in admin or admin["Type"] == "STANDARD"


def test_cluster_admits_only_access_entries(compute):
    # Authentication mode API: no aws-auth ConfigMap; the access entries above are the whole list.
    compute.has_resource_properties(
        "AWS::EKS::Cluster", {"AccessConfig": Match.object_like({"AuthenticationMode": "API"})}
    )


# --- Kubernetes version and support -----------------------------------------------------------


def test_version_in_standard_support_and_never_extended(compute):
    compute.has_resource_properties(
        "AWS::EKS::Cluster",
        {
            "Version": Match.string_like_regexp(r"^1\.3[56]$"),  # standard support in late 2026 (1.33 left it)
            "UpgradePolicy": {"SupportType": "STANDARD"},
        },
    )


def test_one_kubernetes_minor_everywhere(synth):
    """The cluster, the kubectl layer, cdk8s-plus and the manifests' schema check agree."""
    import importlib

    import kubernetes_validate

    import cdk8s_app
    from cdk8s_app import validate
    from cdk_app.config import KUBERNETES_VERSION
    from tests.infra.cdk_support import ROOT

    minor = KUBERNETES_VERSION.split(".")[1]
    assert synth.platform.config.kubernetes_version == KUBERNETES_VERSION
    assert cdk8s_app.KUBERNETES_VERSION == validate.KUBERNETES_VERSION == KUBERNETES_VERSION
    importlib.import_module(f"aws_cdk.lambda_layer_kubectl_v{minor}")
    importlib.import_module(f"cdk8s_plus_{minor}")
    compute = (ROOT / "cdk_app" / "stacks" / "compute.py").read_text()
    assert f"KubectlV{minor}Layer(" in compute and not re.search(rf"KubectlV(?!{minor})\d+Layer", compute)
    for module in ("charts", "network", "pods", "workloads"):
        source = (ROOT / "cdk8s_app" / f"{module}.py").read_text()
        assert not re.search(rf"cdk8s_plus_(?!{minor})\d+", source), module
    # kubernetes-validate ships this minor's strict schemas (it raises for a version it lacks).
    kubernetes_validate.validate(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}, KUBERNETES_VERSION, strict=True
    )


# --- API endpoint -----------------------------------------------------------------------------


def test_endpoint_private_by_default(compute):
    compute.has_resource_properties(
        "AWS::EKS::Cluster",
        {
            "ResourcesVpcConfig": Match.object_like(
                {
                    "EndpointPrivateAccess": True,
                    "EndpointPublicAccess": False,
                    "PublicAccessCidrs": Match.absent(),
                }
            )
        },
    )


def test_kubectl_handler_runs_in_the_vpc_to_reach_the_private_endpoint(synth):
    functions = resources(compute_template(synth), "AWS::Lambda::Function")
    kubectl = [f["Properties"] for k, f in functions.items() if k.startswith("ClusterKubectlProvider")]
    assert len(kubectl) == 2  # the handler and the provider framework's onEvent
    for props in kubectl:
        assert props["VpcConfig"]["SubnetIds"], "outside the VPC a private-only endpoint is unreachable"
        assert any("ClusterSecurityGroupId" in json.dumps(g) for g in props["VpcConfig"]["SecurityGroupIds"])


def test_public_endpoint_only_from_the_configured_cidrs(tmp_path_factory, clean_env):
    cidrs = ["203.0.113.0/24", "198.51.100.7/32"]
    template = synth_compute(tmp_path_factory, **{"vidpipe:endpointPublicCidrs": cidrs})
    (cluster,) = resources(template, "AWS::EKS::Cluster").values()
    vpc = cluster["Properties"]["ResourcesVpcConfig"]
    assert (vpc["EndpointPublicAccess"], vpc["EndpointPrivateAccess"]) == (True, True)
    assert vpc["PublicAccessCidrs"] == cidrs


# --- nodes and instance metadata --------------------------------------------------------------


def test_nodes_require_imdsv2_with_hop_limit_one(synth, compute):
    template = compute_template(synth)
    templates = resources(template, "AWS::EC2::LaunchTemplate")
    groups = resources(template, "AWS::EKS::Nodegroup")
    assert len(groups) == 2
    for name, group in groups.items():
        ref = group["Properties"]["LaunchTemplate"]["Id"]["Ref"]
        data = templates[ref]["Properties"]["LaunchTemplateData"]
        assert data["MetadataOptions"] == {
            "HttpEndpoint": "enabled",
            "HttpTokens": "required",
            "HttpPutResponseHopLimit": 1,
        }, name
        (root,) = data["BlockDeviceMappings"]
        assert root["Ebs"] == {"VolumeSize": 40, "VolumeType": "gp3", "Encrypted": True, "DeleteOnTermination": True}
        assert "DiskSize" not in group["Properties"]  # EKS refuses it next to a launch template
        assert "ImageId" not in data  # EKS still picks and bootstraps the AL2023 AMI


# --- cross-stack references -------------------------------------------------------------------

# What docs/DEPLOY.md ("Cross-stack references") lists; a change here changes what a later deploy can do.
EXPECTED_EXPORTS = {
    "network": {
        "Vpc": "Ref",
        "VpcprivateSubnet1Subnet": "Ref",
        "VpcprivateSubnet2Subnet": "Ref",
        "VpcprivateSubnet3Subnet": "Ref",
        "Vpc.CidrBlock": "GetAtt",
    },
    "data": {
        "KafkaSecurityGroup.GroupId": "GetAtt",
        "KafkaClusterBootstrapBrokersBootstrapBrokerStringSaslIam.BootstrapBrokerStringSaslIam": "GetAtt",
        # The pods' KMS grants name the archive key exactly (retained, never replaced: the export never blocks).
        "ArchiveKey.Arn": "GetAtt",
    },
}


def _exports(template: dict) -> dict[str, str]:
    """export name -> what it exports, as 'LogicalIdWithoutHash' or 'LogicalIdWithoutHash.Attribute'."""
    found = {}
    for output in template.get("Outputs", {}).values():
        if "Export" in output:
            value = output["Value"]
            if "Ref" in value:
                found[output["Export"]["Name"]] = re.sub(r"[0-9A-F]{8}$", "", value["Ref"])
            else:
                logical, attribute = value["Fn::GetAtt"]
                found[output["Export"]["Name"]] = f"{re.sub(r'[0-9A-F]{8}$', '', logical)}.{attribute}"
    return found


def test_cross_stack_exports_are_the_documented_ones(synth):
    platform = synth.platform
    exported = {}
    for key in ("network", "data", "compute"):
        exports = _exports(synth.templates[getattr(platform, key).stack_name])
        exported.update(exports)
        assert set(exports.values()) == set(EXPECTED_EXPORTS.get(key, {})), key
    assert not _exports(synth.templates[platform.deploy_access.stack_name])
    imported = {
        name for t in synth.templates.values() for name in re.findall(r'"Fn::ImportValue": "([^"]+)"', json.dumps(t))
    }
    assert imported == set(exported), "every export is imported (CDK drops unused ones), and nothing else is"
    compute_imports = set(
        re.findall(r'"Fn::ImportValue": "([^"]+)"', json.dumps(synth.templates[platform.compute.stack_name]))
    )
    assert compute_imports == set(exported)  # compute uses all 8; data uses the network's VPC and subnets
    assert not re.search(r"Fn::ImportValue", json.dumps(synth.templates[platform.network.stack_name]))


# --- the address the NetworkPolicies exclude is the one IMDS answers on -------------------------


def test_metadata_address_constant():
    from cdk8s_app.network import INSTANCE_METADATA

    assert ipaddress.ip_network(INSTANCE_METADATA) == ipaddress.ip_network("169.254.169.254/32")
