"""Least privilege in the network and in trust: the S3 endpoint policy, security-group egress, the interface
endpoints, the Pod Identity trust conditions, control-plane logs, the API token secret and who may read it."""

from __future__ import annotations

import json

import pytest

from tests.infra.cdk_support import chart_objects, find, render_cfn

pytestmark = pytest.mark.infra


def resources(template: dict, type_: str) -> dict[str, dict]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == type_}


def network_template(synth) -> dict:
    return synth.templates[synth.platform.network.stack_name]


def compute_template(synth) -> dict:
    return synth.templates[synth.platform.compute.stack_name]


def endpoints(template: dict) -> dict[str, dict]:
    """Service suffix (s3, secretsmanager, ...) -> endpoint properties."""
    found = {}
    for resource in resources(template, "AWS::EC2::VPCEndpoint").values():
        service = render_cfn(resource["Properties"]["ServiceName"]).rsplit(".", 1)[-1]
        kind = resource["Properties"].get("VpcEndpointType", "Gateway")
        found[f"{service}:{kind}"] = resource["Properties"]
    return found


# --- S3 endpoint policy ---------------------------------------------------------------------------


EXPECTED_S3_POLICY = {
    "ArchiveBucket": (
        {
            "s3:GetObject",
            "s3:PutObject",
            "s3:ListBucket",
            "s3:GetBucketLocation",
            # erasure (python -m tools.erase) from inside the VPC
            "s3:ListBucketVersions",
            "s3:DeleteObject",
            "s3:DeleteObjectVersion",
        },
        {
            "arn:<AWS::Partition>:s3:::vidpipe-dev-archive-<AWS::AccountId>-<AWS::Region>",
            "arn:<AWS::Partition>:s3:::vidpipe-dev-archive-<AWS::AccountId>-<AWS::Region>/*",
        },
    ),
    # ECR's image layers (an AWS-owned bucket, presigned URLs).
    "EcrImageLayers": ({"s3:GetObject"}, {"arn:<AWS::Partition>:s3:::prod-<AWS::Region>-starport-layer-bucket/*"}),
    # The kubectl provider's handlers answer CloudFormation from inside the VPC.
    "CloudFormationCustomResourceResponses": (
        {"s3:PutObject"},
        {
            "arn:<AWS::Partition>:s3:::cloudformation-custom-resource-response-"
            "<{'Fn::Split': ['-', {'Ref': 'AWS::Region'}]}>/*"
        },
    ),
}


def s3_policy(properties: dict) -> dict[str, tuple[set[str], set[str]]]:
    statements = properties["PolicyDocument"]["Statement"]
    found = {}
    for s in statements:
        assert s["Effect"] == "Allow" and s["Principal"] == {"AWS": "*"}
        actions = s["Action"] if isinstance(s["Action"], list) else [s["Action"]]
        targets = s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]]
        found[s["Sid"]] = (set(actions), {_render_join(r) for r in targets})
    return found


def _render_join(value) -> str:
    """render_cfn, with a nested Fn::Join (the region without dashes) shown by its inner function."""
    if isinstance(value, dict) and "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return separator.join(
            render_cfn(p["Fn::Join"][1]) if isinstance(p, dict) and "Fn::Join" in p else render_cfn(p) for p in parts
        )
    return render_cfn(value)


def test_the_s3_gateway_endpoint_reaches_only_this_deployments_bucket_and_what_aws_needs(synth):
    gateway = endpoints(network_template(synth))["s3:Gateway"]
    assert s3_policy(gateway) == EXPECTED_S3_POLICY
    text = json.dumps(gateway["PolicyDocument"])
    assert '"Resource": "*"' not in text and '"s3:*"' not in text


def test_an_s3_interface_endpoint_is_opt_in_with_the_same_policy_and_vpc_wide_dns(synth, privacy):
    assert "s3:Interface" not in endpoints(network_template(synth))
    interface = endpoints(network_template(privacy))["s3:Interface"]
    assert interface["PrivateDnsEnabled"] is True
    assert interface["DnsOptions"] == {"PrivateDnsOnlyForInboundResolverEndpoint": "AllResolvers"}
    assert s3_policy(interface) == EXPECTED_S3_POLICY
    # ...and the NetworkPolicies then send HTTPS to S3 inside the VPC only.
    objects = chart_objects(compute_template(privacy))
    policy = find(objects, "NetworkPolicy", "inference-service")["spec"]
    https = [rule for rule in policy["egress"] if rule["ports"] == [{"port": 443, "protocol": "TCP"}]]
    (rule,) = https
    (peer,) = rule["to"]
    assert peer["ipBlock"]["cidr"].startswith("<import:vidpipe-dev-network:ExportsOutputFnGetAttVpc8378EB38CidrBlock")


# --- interface endpoints and security groups ---------------------------------------------------------


def test_secrets_manager_is_reached_through_its_interface_endpoint(synth):
    found = endpoints(network_template(synth))
    for service in ("secretsmanager", "sts", "api", "dkr", "logs"):
        assert found[f"{service}:Interface"]["PrivateDnsEnabled"] is True, service


def _egress(group: dict) -> list[dict]:
    return group["Properties"].get("SecurityGroupEgress", [])


def test_no_security_group_sends_to_any_address(synth):
    """Endpoint security groups only answer (no egress); the control plane's sends to the VPC only; the
    brokers send nothing. (EKS's own cluster security group is EKS's, not in the templates.)"""
    groups = {}
    for name, template in synth.templates.items():
        groups.update({f"{name}/{k}": v for k, v in resources(template, "AWS::EC2::SecurityGroup").items()})
        for key, rule in resources(template, "AWS::EC2::SecurityGroupEgress").items():
            assert rule["Properties"].get("CidrIp") != "0.0.0.0/0", key
    assert groups
    for key, group in groups.items():
        for rule in _egress(group):
            assert rule.get("CidrIp") not in ("0.0.0.0/0",) and rule.get("CidrIpv6") != "::/0", (key, rule)
    control_plane = next(g for k, g in groups.items() if "ControlPlaneSecurityGroup" in k)
    (rule,) = _egress(control_plane)
    assert "Vpc8378EB38CidrBlock" in rule["CidrIp"]["Fn::ImportValue"], "the VPC CIDR, from the network stack"
    assert (rule["IpProtocol"], rule["FromPort"], rule["ToPort"]) == ("tcp", 0, 65535)
    for key, group in groups.items():
        if "EndpointSecurityGroup" in key:
            # CDK's placeholder for "no egress": one rule to 255.255.255.255/32, ICMP type 252 code 86.
            assert [r["CidrIp"] for r in _egress(group)] == ["255.255.255.255/32"], key
            (ingress,) = group["Properties"]["SecurityGroupIngress"]
            assert ingress["FromPort"] == ingress["ToPort"] == 443 and "CidrBlock" in json.dumps(ingress["CidrIp"])


def test_the_cluster_is_not_replaced_for_its_security_group(synth):
    """Egress is narrowed on the existing control-plane security group (an in-place change); a different group
    in ResourcesVpcConfig would replace the cluster."""
    (cluster,) = resources(compute_template(synth), "AWS::EKS::Cluster").values()
    (group,) = cluster["Properties"]["ResourcesVpcConfig"]["SecurityGroupIds"]
    assert group["Fn::GetAtt"][0].startswith("ClusterControlPlaneSecurityGroup")


# --- EKS -------------------------------------------------------------------------------------------


def test_all_five_control_plane_logs(synth):
    (cluster,) = resources(compute_template(synth), "AWS::EKS::Cluster").values()
    types = [t["Type"] for t in cluster["Properties"]["Logging"]["ClusterLogging"]["EnabledTypes"]]
    assert sorted(types) == ["api", "audit", "authenticator", "controllerManager", "scheduler"]


def test_every_pod_role_trusts_only_its_service_account_on_this_cluster(synth):
    """Pod Identity trust: this account, this cluster (aws:SourceArn: the cluster or one of its associations),
    and the session tags of exactly the associated namespace and ServiceAccount."""
    template = compute_template(synth)
    associations = {
        render_cfn(a["Properties"]["RoleArn"]["Fn::GetAtt"][0]): (
            a["Properties"]["Namespace"],
            a["Properties"]["ServiceAccount"],
        )
        for a in resources(template, "AWS::EKS::PodIdentityAssociation").values()
    }
    assert len(associations) == 6  # the four services, KEDA's operator and the registry seed Job
    (cluster_id,) = resources(template, "AWS::EKS::Cluster")
    cluster_arn = {"Fn::GetAtt": [cluster_id, "Arn"]}
    for role_id, (namespace, account) in associations.items():
        (statement,) = template["Resources"][role_id]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        assert statement["Principal"] == {"Service": "pods.eks.amazonaws.com"}
        assert sorted(statement["Action"]) == ["sts:AssumeRole", "sts:TagSession"]
        equals = statement["Condition"]["StringEquals"]
        assert equals["aws:SourceAccount"] == {"Ref": "AWS::AccountId"}
        assert equals["aws:RequestTag/eks-cluster-arn"] == cluster_arn
        assert (equals["aws:RequestTag/kubernetes-namespace"], equals["aws:RequestTag/kubernetes-service-account"]) == (
            namespace,
            account,
        )
        cluster, association = statement["Condition"]["ArnLike"]["aws:SourceArn"]
        assert cluster == cluster_arn
        assert render_cfn(association) == (
            f"arn:<AWS::Partition>:eks:<AWS::Region>:<AWS::AccountId>:podidentityassociation/<{cluster_id}>/*"
        )


# --- the API token -----------------------------------------------------------------------------------


def _secret_readers(template: dict, secret_ref: dict) -> set[str]:
    readers = set()
    for logical_id, policy in resources(template, "AWS::IAM::Policy").items():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            if statement["Resource"] == secret_ref or secret_ref in _list(statement["Resource"]):
                assert _list(statement["Action"]) == ["secretsmanager:GetSecretValue"], logical_id
                readers.add(logical_id)
    return readers


def _list(value) -> list:
    return value if isinstance(value, list) else [value]


def test_one_generated_api_token_readable_by_inference_analytics_the_consumer_and_the_seed_job_only(synth):
    template = compute_template(synth)
    (secret_id,) = resources(template, "AWS::SecretsManager::Secret")
    secret = template["Resources"][secret_id]["Properties"]
    assert "SecretString" not in secret, "generated by Secrets Manager, never in the template"
    assert secret["GenerateSecretString"]["PasswordLength"] >= 32
    compute = synth.platform.compute
    expected = {
        compute.get_logical_id(compute.identities[name].policy.node.default_child)
        for name in ("inference-service", "analytics-service", "consumer-service", "stream-registry-seed")
    }
    assert _secret_readers(template, {"Ref": secret_id}) == expected
    assert template["Outputs"]["ApiTokenSecretArn"]["Value"] == {"Ref": secret_id}


def test_the_token_arn_reaches_the_three_services_by_their_variables(synth):
    template = compute_template(synth)
    (secret_id,) = resources(template, "AWS::SecretsManager::Secret")
    objects = chart_objects(template)
    expected = {
        "inference-service": "INFERENCE_API_TOKEN_SECRET_ARN",
        "analytics-service": "ANALYTICS_API_TOKEN_SECRET_ARN",
        "consumer-service": "CONSUMER_INFERENCE_TOKEN_SECRET_ARN",
    }
    for config_map in (o for o in objects if o["kind"] == "ConfigMap"):
        name = config_map["metadata"]["name"]
        arns = {k: v for k, v in config_map.get("data", {}).items() if "TOKEN" in k}
        if name in expected:
            assert arns == {expected[name]: f"<{secret_id}>"}, name
        else:
            assert not arns, name
    # The registry seed Job sends it: the ARN on its command line, and the CLI reads the secret itself.
    (seed,) = [o for o in objects if o["kind"] == "Job"]
    (container,) = seed["spec"]["template"]["spec"]["containers"]
    assert container["args"][2:4] == ["--token-secret-arn", f"<{secret_id}>"] and "env" not in container


def test_the_standalone_path_gets_the_token_arn_and_vpc_cidr_from_the_outputs(synth):
    """`cdk deploy --outputs-file` carries ApiTokenSecretArn (compute) and VpcCidr (network): the charts read both."""
    outputs = {key for template in synth.templates.values() for key in template.get("Outputs", {})}
    assert {"ApiTokenSecretArn", "VpcCidr"} <= outputs
    sample = json.loads((__import__("cdk_support").ROOT / "cdk8s_app" / "sample-outputs.json").read_text())
    merged = {k: v for stack in sample.values() for k, v in stack.items()}
    assert merged["ApiTokenSecretArn"].startswith("arn:aws:secretsmanager:") and merged["VpcCidr"]
