"""Retention and erasure are configuration: lifecycle rules, the archive's KMS key and who may use it, the
dead-letter topic's retention and payload, the optional audit of archive reads."""

from __future__ import annotations

import json

import pytest

from cdk_app.config import ConfigError, load_config
from tests.infra.cdk_support import chart_objects, find, render_cfn, user_context

pytestmark = pytest.mark.infra


def resources(template: dict, type_: str) -> dict[str, dict]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == type_}


def archive_bucket(template: dict) -> dict:
    (bucket,) = [b for k, b in resources(template, "AWS::S3::Bucket").items() if k.startswith("ArchiveBucket")]
    return bucket["Properties"]


def data_template(synth) -> dict:
    return synth.templates[synth.platform.data.stack_name]


def compute_template(synth) -> dict:
    return synth.templates[synth.platform.compute.stack_name]


# --- lifecycle ---------------------------------------------------------------------------------


def test_three_day_retention_reaches_the_lifecycle_rules(privacy):
    """A 72-hour footage rule: frames and results expire after 3 days, their last version a day later, delete
    markers and unfinished uploads do not linger. No transition (expiry comes before Standard-IA's 30 days)."""
    rules = {r["Id"]: r for r in archive_bucket(data_template(privacy))["LifecycleConfiguration"]["Rules"]}
    assert rules["frames"] == {"Id": "frames", "Prefix": "archive/frames/", "ExpirationInDays": 3, "Status": "Enabled"}
    assert rules["results"] == {
        "Id": "results",
        "Prefix": "archive/results/",
        "ExpirationInDays": 3,
        "Status": "Enabled",
    }
    assert rules["noncurrent-and-incomplete"]["NoncurrentVersionExpiration"] == {"NoncurrentDays": 1}
    assert rules["noncurrent-and-incomplete"]["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 1}
    assert rules["expired-delete-markers"]["ExpiredObjectDeleteMarker"] is True


def test_an_infrequent_access_transition_is_opt_in_and_checked():
    config = load_config(
        user_context(**{"vidpipe:framesExpireAfterDays": 90, "vidpipe:framesInfrequentAccessAfterDays": 30})
    )
    assert (config.frames_ia_after_days, config.frames_expire_after_days) == (30, 90)
    assert load_config(user_context()).frames_ia_after_days is None


@pytest.mark.parametrize(
    ("context", "named"),
    [
        ({"vidpipe:framesExpireAfterDays": 0}, "vidpipe:framesExpireAfterDays"),
        ({"vidpipe:resultsExpireAfterDays": 0}, "vidpipe:resultsExpireAfterDays"),
        ({"vidpipe:noncurrentVersionsExpireAfterDays": 0}, "vidpipe:noncurrentVersionsExpireAfterDays"),
        ({"vidpipe:framesInfrequentAccessAfterDays": 10}, "vidpipe:framesInfrequentAccessAfterDays"),  # S3: >= 30
        (
            {"vidpipe:framesExpireAfterDays": 30, "vidpipe:framesInfrequentAccessAfterDays": 30},
            "vidpipe:framesInfrequentAccessAfterDays",
        ),
        ({"vidpipe:deadLetters": {"payload": "images"}}, "vidpipe:deadLetters.payload"),
        ({"vidpipe:deadLetters": {"retentionHours": 0}}, "vidpipe:deadLetters.retentionHours"),
        ({"vidpipe:deadLetters": {"retention": 24}}, "vidpipe:deadLetters.retention"),
        ({"vidpipe:metricsNamespace": "Monitoring!"}, "vidpipe:metricsNamespace"),
    ],
)
def test_a_bad_retention_setting_fails_synth_naming_the_key(context, named):
    with pytest.raises(ConfigError) as error:
        load_config(user_context(**context))
    assert named in str(error.value)


def test_the_metrics_namespace_can_be_turned_off_from_the_command_line():
    assert load_config(user_context()).metrics_namespace == "monitoring"
    assert load_config(user_context(**{"vidpipe:metricsNamespace": ""})).metrics_namespace is None
    assert load_config(user_context(**{"vidpipe:metricsNamespace": None})).metrics_namespace is None


def test_one_day_is_the_shortest_retention():
    config = load_config(user_context(**{"vidpipe:framesExpireAfterDays": 1, "vidpipe:resultsExpireAfterDays": 1}))
    assert (config.frames_expire_after_days, config.results_expire_after_days) == (1, 1)


# --- the archive's KMS key ---------------------------------------------------------------------------


def test_archive_is_encrypted_with_its_own_rotating_key_and_a_bucket_key(synth):
    template = data_template(synth)
    (key_id,) = [k for k in resources(template, "AWS::KMS::Key") if k.startswith("ArchiveKey")]
    key = template["Resources"][key_id]
    assert key["Properties"]["EnableKeyRotation"] is True
    assert key["DeletionPolicy"] == "Retain"
    (rule,) = archive_bucket(template)["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["BucketKeyEnabled"] is True, "one KMS request per bucket key lifetime, not one per frame"
    assert rule["ServerSideEncryptionByDefault"] == {
        "SSEAlgorithm": "aws:kms",
        "KMSMasterKeyID": {"Fn::GetAtt": [key_id, "Arn"]},
    }
    assert template["Outputs"]["ArchiveKeyArn"]["Value"] == {"Fn::GetAtt": [key_id, "Arn"]}


def test_the_key_policy_lets_the_account_administer_and_nobody_decrypt_outside_s3(synth):
    template = data_template(synth)
    (key,) = [v for k, v in resources(template, "AWS::KMS::Key").items() if k.startswith("ArchiveKey")]
    statements = {s["Sid"]: s for s in key["Properties"]["KeyPolicy"]["Statement"]}
    assert set(statements) == {"AccountAdministersAndDelegatesToIam", "CryptoOnlyThroughS3"}
    admin = statements["AccountAdministersAndDelegatesToIam"]
    assert render_cfn(admin["Principal"]["AWS"]) == "arn:<AWS::Partition>:iam::<AWS::AccountId>:root"
    deny = statements["CryptoOnlyThroughS3"]
    assert deny["Effect"] == "Deny" and deny["Principal"] == {"AWS": "*"}
    assert {"kms:Decrypt", "kms:GenerateDataKey*", "kms:Encrypt", "kms:ReEncrypt*"} == set(deny["Action"])
    assert render_cfn(deny["Condition"]["StringNotEquals"]["kms:ViaService"]) == "s3.<AWS::Region>.amazonaws.com"


def key_grants(synth) -> dict[str, list[dict]]:
    """Identity name -> its statements on the archive key."""
    template = compute_template(synth)
    grants = {}
    for name, identity in synth.platform.compute.identities.items():
        logical_id = synth.platform.compute.get_logical_id(identity.policy.node.default_child)
        statements = template["Resources"][logical_id]["Properties"]["PolicyDocument"]["Statement"]
        grants[name] = [s for s in statements if any(a.startswith("kms:") for a in _list(s["Action"]))]
    return grants


def _list(value) -> list:
    return value if isinstance(value, list) else [value]


def test_each_pod_role_gets_exactly_the_key_use_its_s3_grant_needs(synth):
    """The writers generate data keys, the readers (live view frames, the model) decrypt; inference does both
    (it reads the model and the start-up gate's verdicts, and writes verdicts); nobody else uses the key, and
    only through S3, for this bucket."""
    grants = key_grants(synth)
    expected = {
        "consumer-service": ["kms:GenerateDataKey"],
        "inference-service": ["kms:Decrypt", "kms:GenerateDataKey"],
        "analytics-service": ["kms:Decrypt"],
    }
    for name, statements in grants.items():
        if name not in expected:
            assert statements == [], name
            continue
        (statement,) = statements
        assert _list(statement["Action"]) == expected[name], name
        assert statement["Resource"] == {
            "Fn::ImportValue": "vidpipe-dev-data:ExportsOutputFnGetAttArchiveKey3EF5EDE5ArnED91B387"
        }
        conditions = statement["Condition"]["StringEquals"]
        assert render_cfn(conditions["kms:ViaService"]) == "s3.<AWS::Region>.amazonaws.com"
        assert (
            render_cfn(conditions["kms:EncryptionContext:aws:s3:arn"])
            == "arn:<AWS::Partition>:s3:::vidpipe-dev-archive-<AWS::AccountId>-<AWS::Region>"
        )


# --- dead letters ------------------------------------------------------------------------------------


def test_dead_letters_default_to_headers_only(synth):
    objects = chart_objects(compute_template(synth))
    assert find(objects, "ConfigMap", "consumer-service")["data"]["CONSUMER_DEAD_LETTER_PAYLOAD"] == "headers"
    assert find(objects, "ConfigMap", "vidpipe-kafka")["data"]["TOPICS_DEAD_LETTER_RETENTION_HOURS"] == "168"


def test_dead_letter_retention_and_payload_reach_the_topic_creators(privacy):
    """TOPICS_DEAD_LETTER_RETENTION_HOURS where topics are created (the publishers and the consumer read
    vidpipe-kafka with TOPICS_CREATE=true); CONSUMER_DEAD_LETTER_PAYLOAD on the consumer."""
    objects = chart_objects(compute_template(privacy))
    kafka = find(objects, "ConfigMap", "vidpipe-kafka")["data"]
    assert kafka["TOPICS_DEAD_LETTER_RETENTION_HOURS"] == "72" and kafka["TOPICS_CREATE"] == "true"
    assert find(objects, "ConfigMap", "consumer-service")["data"]["CONSUMER_DEAD_LETTER_PAYLOAD"] == "headers"
    for name in ("consumer-service", "frame-publisher"):
        (container,) = find(objects, "Deployment", name)["spec"]["template"]["spec"]["containers"]
        assert {"configMapRef": {"name": "vidpipe-kafka"}} in container["envFrom"], name


def test_the_standalone_charts_take_the_same_settings(wiring_factory):
    manifests = wiring_factory({"dead_letters": {"retention_hours": 72, "payload": "full"}})
    assert manifests.config_map("vidpipe-kafka")["TOPICS_DEAD_LETTER_RETENTION_HOURS"] == "72"
    assert manifests.config_map("consumer-service")["CONSUMER_DEAD_LETTER_PAYLOAD"] == "full"


@pytest.fixture(scope="module")
def wiring_factory():
    from tests.k8s.k8s_helpers import SAMPLE_OUTPUTS, SETTINGS, synthesize
    from vidpipe_deploy.wiring import PlatformWiring, load_settings

    def build(overrides: dict):
        settings = {**load_settings(SETTINGS), **overrides}
        return synthesize(PlatformWiring.from_outputs_file(SAMPLE_OUTPUTS, settings))

    return build


# --- auditing reads ----------------------------------------------------------------------------------


def test_no_trail_unless_asked(synth):
    assert not resources(data_template(synth), "AWS::CloudTrail::Trail")


def test_the_read_audit_records_archive_reads_only(privacy):
    template = data_template(privacy)
    (trail,) = resources(template, "AWS::CloudTrail::Trail").values()
    props = trail["Properties"]
    (selector,) = props["EventSelectors"]
    assert selector["ReadWriteType"] == "ReadOnly" and selector["IncludeManagementEvents"] is False
    (data_resource,) = selector["DataResources"]
    assert data_resource["Type"] == "AWS::S3::Object"
    (prefix,) = data_resource["Values"]
    assert prefix["Fn::Join"][1][-1] == "/archive/" and "ArchiveBucket" in json.dumps(prefix)
    assert props["EnableLogFileValidation"] is True and props["IsMultiRegionTrail"] is False
    audit = [b for k, b in resources(template, "AWS::S3::Bucket").items() if k.startswith("ArchiveAuditLogs")]
    (bucket,) = audit
    (rule,) = bucket["Properties"]["LifecycleConfiguration"]["Rules"]
    assert rule["ExpirationInDays"] == 365
    assert "AuditLogBucketName" in template["Outputs"]
