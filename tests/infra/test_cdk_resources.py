"""Fine-grained checks on the synthesized templates: what each stack must guarantee."""

from __future__ import annotations

import json
import re

import pytest
from aws_cdk.assertions import Match

from tests.infra.cdk_support import render_cfn

pytestmark = pytest.mark.infra


def resources(template: dict, type_: str) -> dict[str, dict]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == type_}


# --- S3 ------------------------------------------------------------------------------------


def test_buckets_are_private_encrypted_and_ssl_only(synth, data):
    buckets = resources(synth.templates[synth.platform.data.stack_name], "AWS::S3::Bucket")
    assert len(buckets) == 2  # archive + access logs
    for bucket in buckets.values():
        props = bucket["Properties"]
        assert props["PublicAccessBlockConfiguration"] == {
            "BlockPublicAcls": True,
            "BlockPublicPolicy": True,
            "IgnorePublicAcls": True,
            "RestrictPublicBuckets": True,
        }
        rule = props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
        assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in ("AES256", "aws:kms")
        assert bucket["DeletionPolicy"] == "Retain"
    # enforce_ssl: a Deny on aws:SecureTransport=false in both bucket policies
    data.resource_count_is("AWS::S3::BucketPolicy", 2)
    data.all_resources_properties(
        "AWS::S3::BucketPolicy",
        {
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Effect": "Deny",
                                "Action": "s3:*",
                                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                            }
                        )
                    ]
                )
            }
        },
    )


def test_archive_bucket_versioning_lifecycle_and_access_logs(data):
    """Privacy-respecting defaults: frames 30 days, no transition (Standard-IA bills 30 days at least), the last
    version of an expired object gone a day later."""
    data.has_resource_properties(
        "AWS::S3::Bucket",
        {
            "VersioningConfiguration": {"Status": "Enabled"},
            "LoggingConfiguration": {"DestinationBucketName": Match.any_value(), "LogFilePrefix": "archive-bucket/"},
            "LifecycleConfiguration": {
                "Rules": [
                    {"Id": "frames", "Prefix": "archive/frames/", "ExpirationInDays": 30, "Status": "Enabled"},
                    {"Id": "results", "Prefix": "archive/results/", "ExpirationInDays": 365, "Status": "Enabled"},
                    {
                        "Id": "noncurrent-and-incomplete",
                        "NoncurrentVersionExpiration": {"NoncurrentDays": 1},
                        "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
                        "Status": "Enabled",
                    },
                    {"Id": "expired-delete-markers", "ExpiredObjectDeleteMarker": True, "Status": "Enabled"},
                ]
            },
        },
    )


# --- MSK -----------------------------------------------------------------------------------


def test_msk_iam_auth_tls_and_encryption_at_rest(data):
    data.has_resource_properties(
        "AWS::MSK::Cluster",
        {
            "ClientAuthentication": {"Sasl": {"Iam": {"Enabled": True}}},
            "EncryptionInfo": {
                "EncryptionInTransit": {"ClientBroker": "TLS", "InCluster": True},
                "EncryptionAtRest": {"DataVolumeKMSKeyId": Match.any_value()},
            },
            "LoggingInfo": {"BrokerLogs": {"CloudWatchLogs": {"Enabled": True, "LogGroup": Match.any_value()}}},
            "NumberOfBrokerNodes": 3,  # 1 per AZ x 3 AZs
            "BrokerNodeGroupInfo": Match.object_like({"InstanceType": "kafka.m7g.large"}),
        },
    )
    data.has_resource("AWS::MSK::Cluster", {"DeletionPolicy": "Retain"})


def test_msk_configuration_matches_the_contract(synth):
    config = resources(synth.templates[synth.platform.data.stack_name], "AWS::MSK::Configuration")
    (props,) = [c["Properties"] for c in config.values()]
    server = dict(line.split("=", 1) for line in props["ServerProperties"].splitlines() if line)
    assert server["message.max.bytes"] == str(8 * 1024 * 1024)
    assert server["auto.create.topics.enable"] == "false"
    assert server["default.replication.factor"] == "3"
    assert server["num.partitions"] == "6"
    assert props["KafkaVersionsList"] == ["3.9.x"]


def test_kafka_port_opened_from_the_eks_cluster_security_group_only(compute):
    compute.has_resource_properties(
        "AWS::EC2::SecurityGroupIngress",
        {
            "IpProtocol": "tcp",
            "FromPort": 9098,
            "ToPort": 9098,
            "SourceSecurityGroupId": {"Fn::GetAtt": [Match.string_like_regexp("^Cluster"), "ClusterSecurityGroupId"]},
        },
    )


# --- EKS -----------------------------------------------------------------------------------


def test_eks_version_logging_and_secrets_encryption(compute):
    compute.has_resource_properties(
        "AWS::EKS::Cluster",
        {
            "Version": "1.36",
            "EncryptionConfig": [Match.object_like({"Resources": ["secrets"]})],
            "Logging": {"ClusterLogging": {"EnabledTypes": Match.array_with([{"Type": "audit"}])}},
        },
    )


def test_managed_node_groups_and_vpc_cni_network_policy(compute):
    compute.resource_count_is("AWS::EKS::Nodegroup", 2)
    compute.has_resource_properties(
        "AWS::EKS::Nodegroup",
        {
            "InstanceTypes": ["c7i.xlarge"],
            "Labels": {"vidpipe.io/pool": "inference"},
            "ScalingConfig": {"MinSize": 1, "DesiredSize": 2, "MaxSize": 6},
        },
    )
    compute.has_resource_properties(
        "AWS::EKS::Addon",
        {
            "AddonName": "vpc-cni",
            "ConfigurationValues": json.dumps({"enableNetworkPolicy": "true"}).replace(" ", ""),
        },
    )
    compute.has_resource_properties("AWS::EKS::Addon", {"AddonName": "eks-pod-identity-agent"})


def test_one_pod_identity_per_service_and_no_irsa_annotation(synth, compute):
    associations = resources(synth.templates[synth.platform.compute.stack_name], "AWS::EKS::PodIdentityAssociation")
    accounts = sorted((a["Properties"]["Namespace"], a["Properties"]["ServiceAccount"]) for a in associations.values())
    assert accounts == [
        ("keda", "keda-operator"),
        ("vidpipe", "analytics-service"),
        ("vidpipe", "consumer-service"),
        ("vidpipe", "frame-publisher"),
        ("vidpipe", "inference-service"),
        ("vidpipe", "stream-registry-seed"),
    ]
    compute.resource_count_is("AWS::IAM::OIDCProvider", 0)
    assert "eks.amazonaws.com/role-arn" not in json.dumps(synth.templates[synth.platform.compute.stack_name])


def test_keda_helm_chart_is_pinned_and_uses_our_service_account(compute):
    compute.has_resource_properties(
        "Custom::AWSCDK-EKS-HelmChart",
        {
            "Chart": "keda",
            "Repository": "https://kedacore.github.io/charts",
            "Namespace": "keda",
            "Version": Match.string_like_regexp(r"^\d+\.\d+\.\d+$"),
            "Values": json.dumps(
                {"serviceAccount": {"operator": {"create": False, "name": "keda-operator"}}}, separators=(",", ":")
            ),
        },
    )


# --- IAM -----------------------------------------------------------------------------------


def _policy_documents(template: dict):
    for logical_id, resource in template["Resources"].items():
        if resource["Type"] == "AWS::IAM::Policy":
            yield logical_id, resource["Properties"]["PolicyDocument"]
        elif resource["Type"] == "AWS::IAM::Role":
            for policy in resource["Properties"].get("Policies", []):
                yield logical_id, policy["PolicyDocument"]


def _as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def test_no_s3_or_kafka_actions_on_every_resource(synth):
    checked = 0
    for stack, template in synth.templates.items():
        for logical_id, document in _policy_documents(template):
            for statement in document["Statement"]:
                if statement.get("Effect") != "Allow":
                    continue
                actions = _as_list(statement.get("Action", []))
                scoped = [a for a in actions if isinstance(a, str) and a.split(":")[0] in ("s3", "kafka-cluster")]
                if scoped:
                    checked += 1
                    assert "*" not in _as_list(statement.get("Resource", [])), f"{stack}/{logical_id}: {scoped} on *"
                    assert not {"s3:*", "kafka-cluster:*"} & set(scoped), f"{stack}/{logical_id}: service-wide action"
    assert checked >= 8


def _identity_statements(synth, name: str) -> list[dict]:
    identity = synth.platform.compute.identities[name]
    logical_id = synth.platform.compute.get_logical_id(identity.policy.node.default_child)
    return synth.templates[synth.platform.compute.stack_name]["Resources"][logical_id]["Properties"]["PolicyDocument"][
        "Statement"
    ]


def _grants(statements: list[dict]) -> set[tuple[str, str]]:
    def text(resource) -> str:
        return json.dumps(resource) if not isinstance(resource, str) else resource

    return {(a, text(r)) for s in statements for a in _as_list(s["Action"]) for r in _as_list(s["Resource"])}


def test_the_publishers_one_identity_reads_the_registry_in_their_group_and_writes_frames_and_statuses(synth):
    statements = _identity_statements(synth, "frame-publisher")
    grants = _rendered_grants(statements)
    cluster = f"{KAFKA_ARN}:cluster/vidpipe-dev/*"
    topic = f"{KAFKA_ARN}:topic/vidpipe-dev/*/"
    group = f"{KAFKA_ARN}:group/vidpipe-dev/*/vidpipe-publishers"
    assert {(a, r) for a, r in grants if a != "kafka-cluster:CreateTopic"} == {
        ("kafka-cluster:Connect", cluster),
        ("kafka-cluster:WriteDataIdempotently", cluster),
        ("kafka-cluster:DescribeTopic", topic + "video.streams.v1"),
        ("kafka-cluster:ReadData", topic + "video.streams.v1"),
        ("kafka-cluster:AlterGroup", group),
        ("kafka-cluster:DescribeGroup", group),
        ("kafka-cluster:DescribeTopic", topic + "video.frames.v1"),
        ("kafka-cluster:WriteData", topic + "video.frames.v1"),
        ("kafka-cluster:DescribeTopic", topic + "video.streams.status.v1"),
        ("kafka-cluster:WriteData", topic + "video.streams.status.v1"),
    }
    # No camera secret in the default configuration: no Secrets Manager, no S3.
    assert not any(a.startswith(("s3:", "secretsmanager:", "kms:")) for a, _ in grants)


def test_consumer_reads_frames_writes_results_dlq_and_archive_prefix(synth):
    grants = _grants(_identity_statements(synth, "consumer-service"))
    reads = {r for a, r in grants if a == "kafka-cluster:ReadData"}
    writes = {r for a, r in grants if a == "kafka-cluster:WriteData"}
    assert len(reads) == 1 and "video.frames.v1" in next(iter(reads))
    assert sorted(w.rsplit("/", 1)[-1].rstrip('"]}') for w in writes) == ["video.frames.dlq.v1", "video.results.v1"]
    assert {a for a, r in grants if "group/vidpipe-dev/*/video-inference" in r} == {
        "kafka-cluster:AlterGroup",
        "kafka-cluster:DescribeGroup",
    }
    s3 = {(a, r) for a, r in grants if a.startswith("s3:")}
    assert len(s3) == 1 and next(iter(s3))[0] == "s3:PutObject" and "/archive/*" in next(iter(s3))[1]


def test_inference_reads_the_models_and_keeps_gate_verdicts_under_their_prefixes_only(synth):
    grants = _grants(_identity_statements(synth, "inference-service"))
    s3 = {(a, r) for a, r in grants if a.startswith("s3:")}
    assert len(s3) == 3
    assert {a for a, r in s3 if "/models/*" in r} == {"s3:GetObject"}
    assert {a for a, r in s3 if "/gate-verdicts/*" in r} == {"s3:GetObject", "s3:PutObject"}
    # The objects are encrypted with the archive key: Decrypt to read, GenerateDataKey to write a verdict, both
    # through S3; and the API token it checks.
    assert {a for a, _ in grants} == {
        "s3:GetObject",
        "s3:PutObject",
        "kms:Decrypt",
        "kms:GenerateDataKey",
        "secretsmanager:GetSecretValue",
    }


def _rendered_grants(statements: list[dict]) -> set[tuple[str, str]]:
    return {(a, render_cfn(r)) for s in statements for a in _as_list(s["Action"]) for r in _as_list(s["Resource"])}


KAFKA_ARN = "arn:<AWS::Partition>:kafka:<AWS::Region>:<AWS::AccountId>"
CONTRACT_TOPICS = (
    "video.frames.v1",
    "video.results.v1",
    "video.frames.dlq.v1",
    "video.events.v1",
    "video.streams.v1",
    "video.streams.status.v1",
)


def test_analytics_reads_results_and_the_registry_writes_events_and_the_registry_and_reads_archived_frames(synth):
    statements = _identity_statements(synth, "analytics-service")
    assert {s["Sid"] for s in statements} == {
        "Connect",
        "ReadResults",
        "ReadStreamsAndStatuses",
        "WriteEventsAndStreams",
        "UseGroup",
        "NameReaderGroup",
        "ReadArchivedFrames",
        "ArchiveKeyThroughS3",
        "ReadApiToken",
    }
    assert all(s["Effect"] == "Allow" for s in statements)
    cluster = f"{KAFKA_ARN}:cluster/vidpipe-dev/*"
    readers = f"{KAFKA_ARN}:group/vidpipe-dev/*/vidpipe-readers"
    results = f"{KAFKA_ARN}:topic/vidpipe-dev/*/video.results.v1"
    events = f"{KAFKA_ARN}:topic/vidpipe-dev/*/video.events.v1"
    streams = f"{KAFKA_ARN}:topic/vidpipe-dev/*/video.streams.v1"
    statuses = f"{KAFKA_ARN}:topic/vidpipe-dev/*/video.streams.status.v1"
    group = f"{KAFKA_ARN}:group/vidpipe-dev/*/video-analytics"
    assert _rendered_grants(statements) == {
        ("kafka-cluster:Connect", cluster),
        ("kafka-cluster:WriteDataIdempotently", cluster),  # its events producer is idempotent
        ("kafka-cluster:DescribeTopic", results),
        ("kafka-cluster:ReadData", results),
        # It follows the registry and the statuses, and its control API writes the registry.
        ("kafka-cluster:DescribeTopic", streams),
        ("kafka-cluster:ReadData", streams),
        ("kafka-cluster:WriteData", streams),
        ("kafka-cluster:DescribeTopic", statuses),
        ("kafka-cluster:ReadData", statuses),
        ("kafka-cluster:DescribeTopic", events),
        ("kafka-cluster:WriteData", events),
        ("kafka-cluster:AlterGroup", group),
        ("kafka-cluster:DescribeGroup", group),
        # The registry and status followers name a group they never join (its coordinator lookup).
        ("kafka-cluster:DescribeGroup", readers),
        (
            "s3:GetObject",
            "arn:<AWS::Partition>:s3:::vidpipe-dev-archive-<AWS::AccountId>-<AWS::Region>/archive/frames/*",
        ),
        ("kms:Decrypt", "<import:vidpipe-dev-data:ExportsOutputFnGetAttArchiveKey3EF5EDE5ArnED91B387>"),
        ("secretsmanager:GetSecretValue", "<ApiToken07F9A1D2>"),
    }


def test_the_registry_seed_job_may_read_the_api_token_and_nothing_else(synth):
    statements = _identity_statements(synth, "stream-registry-seed")
    assert _rendered_grants(statements) == {("secretsmanager:GetSecretValue", "<ApiToken07F9A1D2>")}


def test_the_topic_creators_may_create_the_events_topic_and_analytics_none(synth):
    """On MSK the services create the topics (TOPICS_CREATE; the broker never auto-creates): publisher and
    consumer create every contract topic, the events topic and the stream registry's included, and stop on a
    refused one."""
    for name in ("frame-publisher", "consumer-service"):
        grants = _rendered_grants(_identity_statements(synth, name))
        created = {r.rsplit("/", 1)[-1] for a, r in grants if a == "kafka-cluster:CreateTopic"}
        assert created == set(CONTRACT_TOPICS), name
    assert not any(
        a == "kafka-cluster:CreateTopic" for a, _ in _grants(_identity_statements(synth, "analytics-service"))
    )


def test_no_other_identity_touches_the_events_topic_or_the_analytics_group(synth):
    for name in synth.platform.compute.identities:
        if name == "analytics-service":
            continue
        for action, resource in _rendered_grants(_identity_statements(synth, name)):
            assert "video-analytics" not in resource, name
            if "video.events.v1" in resource:
                assert action == "kafka-cluster:CreateTopic", (name, action)


def test_keda_operator_only_describes(synth):
    actions = {a for a, _ in _grants(_identity_statements(synth, "keda-operator"))}
    assert actions == {
        "kafka-cluster:Connect",
        "kafka-cluster:DescribeCluster",
        "kafka-cluster:DescribeGroup",
        "kafka-cluster:DescribeTopic",
    }


# --- network -------------------------------------------------------------------------------


def test_vpc_endpoints_nat_and_flow_logs(synth, network):
    template = synth.templates[synth.platform.network.stack_name]
    services = json.dumps(
        [r["Properties"]["ServiceName"] for r in resources(template, "AWS::EC2::VPCEndpoint").values()]
    )
    for service in (".s3", ".ecr.api", ".ecr.dkr", ".sts", ".logs"):
        assert service in services, service
    network.resource_count_is("AWS::EC2::NatGateway", 1)
    network.resource_count_is("AWS::EC2::FlowLog", 1)
    assert len(resources(template, "AWS::EC2::Subnet")) == 6  # public + private in each of 3 AZs


# --- images, outputs, stacks ---------------------------------------------------------------


def test_four_docker_images_built_from_services(synth):
    assets = json.loads((synth.assembly_dir / f"{synth.platform.compute.artifact_id}.assets.json").read_text())
    images = sorted(
        (
            v["source"]["dockerBuildArgs"]["SERVICE"],
            v["source"]["dockerFile"],
            v["source"]["platform"],
            v["source"]["directory"],
        )
        for v in assets["dockerImages"].values()
    )
    # One Dockerfile, the service chosen by build argument, services/ as the context.
    assert [i[0] for i in images] == ["analytics-service", "consumer-service", "frame-publisher", "inference-service"]
    assert all(i[1:3] == ("Dockerfile", "linux/amd64") and i[3].endswith("/services") for i in images)


def test_model_uploaded_under_models_prefix(data):
    data.has_resource_properties(
        "Custom::CDKBucketDeployment", {"DestinationBucketKeyPrefix": "models/", "Prune": False}
    )


EXPECTED_OUTPUTS = {
    "data": {"ArchiveBucketName", "AccessLogBucketName", "KafkaClusterArn", "KafkaBootstrapBrokersSaslIam"},
    "compute": {
        "Region",
        "ClusterName",
        "KubeconfigCommand",
        "ArchiveBucketName",
        "ArchiveUri",
        "ModelUri",
        "PublisherImageUri",
        "ConsumerImageUri",
        "InferenceImageUri",
        "AnalyticsImageUri",
        "Namespace",
        "KedaNamespace",
        "FramePublisherServiceAccount",
        "FramePublisherRoleArn",
        "ConsumerServiceServiceAccount",
        "ConsumerServiceRoleArn",
        "InferenceServiceServiceAccount",
        "InferenceServiceRoleArn",
        "AnalyticsServiceServiceAccount",
        "AnalyticsServiceRoleArn",
        "KedaOperatorServiceAccount",
        "KedaOperatorRoleArn",
    },
}


def test_outputs_have_stable_names_and_no_exports(synth):
    for stack in ("data", "compute"):
        name = getattr(synth.platform, stack).stack_name
        outputs = synth.templates[name]["Outputs"]
        assert EXPECTED_OUTPUTS[stack] <= set(outputs), f"{stack}: missing {EXPECTED_OUTPUTS[stack] - set(outputs)}"
        ours = {k: v for k, v in outputs.items() if not k.startswith("ExportsOutput")}
        assert not any("Export" in v for v in ours.values()), "outputs are read from the outputs file, never imported"
    command = synth.templates[synth.platform.compute.stack_name]["Outputs"]["KubeconfigCommand"]["Value"]
    assert "aws eks update-kubeconfig --name " in json.dumps(command)


def test_outputs_cover_what_the_kubernetes_side_reads(synth):
    from vidpipe_deploy.registry import registered
    from vidpipe_deploy.units import identity_outputs
    from vidpipe_deploy.wiring import OutputKeys, required_output_keys

    optional = {OutputKeys.NAMESPACE, *(identity_outputs(unit.name)[0] for unit in registered().all())}
    assert set(required_output_keys()) | optional <= set(synth.all_outputs())


def test_data_stack_is_protected_and_independent_of_compute(synth):
    platform = synth.platform
    assert platform.data.termination_protection is True
    assert platform.compute.termination_protection is False
    data = json.dumps(synth.templates[platform.data.stack_name])
    assert "vidpipe-dev-compute" not in data


def test_environment_agnostic_no_account_or_region_literals(synth):
    from tests.infra.cdk_support import TEST_ADMIN_PRINCIPAL

    for name, template in synth.templates.items():
        # The admin principal is the user's own ARN (-c vidpipe:adminPrincipalArn): its account is given.
        text = json.dumps(template).replace(TEST_ADMIN_PRINCIPAL, "<admin principal>")
        assert not re.search(r"(?<![0-9A-Za-z.])\d{12}(?![0-9A-Za-z.])", text), f"{name}: a 12-digit account id"
        assert not re.search(
            r"\b(us|eu|ap|sa|ca|me|af)-(east|west|north|south|central|northeast|southeast)-\d\b", text
        ), name
