"""Configuration comes from CDK context, parsed once; a bad value fails synth naming the key."""

from __future__ import annotations

import pytest

from cdk_app.config import ConfigError, PlatformConfig, load_config
from tests.infra.cdk_support import TEST_ADMIN_PRINCIPAL, cdk_json_context, session_context, user_context

pytestmark = pytest.mark.infra


def test_cdk_json_context_is_valid_and_typed():
    config = load_config(user_context())
    assert isinstance(config, PlatformConfig)
    assert config.kubernetes_version == "1.36"
    assert config.broker_count == 3
    assert config.inference_nodes.instance_types == ["c7i.xlarge"]  # Sapphire Rapids: bf16 on AMX
    assert config.admin_principal_arn == TEST_ADMIN_PRINCIPAL
    assert config.endpoint_public_cidrs == []  # private endpoint unless the user opens it
    assert config.github_environment == "production"


def test_cdk_json_holds_no_user_values():
    # Who administers the cluster and which repository deploys are the user's: -c, never committed.
    context = cdk_json_context()
    assert not {
        "vidpipe:adminPrincipalArn",
        "vidpipe:adminRoleArn",
        "vidpipe:githubRepository",
        "vidpipe:githubOidcProviderArn",
    } & set(context)


def test_command_line_strings_are_coerced():
    # `cdk synth -c vidpipe:brokersPerAz=2 -c vidpipe:streams='[...]'` passes strings.
    config = load_config(
        user_context(
            **{
                "vidpipe:brokersPerAz": "2",
                "vidpipe:streams": '[{"id": "lobby", "source": "secret:lobby", "target_fps": 10}]',
                "vidpipe:cameraPorts": "[554, 8554, 10554]",
                "vidpipe:endpointPublicCidrs": '["203.0.113.0/24", "198.51.100.7/32"]',
            }
        )
    )
    assert config.brokers_per_az == 2
    assert config.streams[0].id == "lobby" and config.streams[0].target_fps == 10
    assert config.camera_ports == [554, 8554, 10554]
    assert config.endpoint_public_cidrs == ["203.0.113.0/24", "198.51.100.7/32"]


@pytest.mark.parametrize(
    "principal",
    [
        "arn:aws:iam::111122223333:role/admin",
        "arn:aws:iam::111122223333:role/aws-reserved/sso.amazonaws.com/eu-west-1/AWSReservedSSO_Admin_0123abcd",
        "arn:aws:iam::111122223333:user/alice",
        "arn:aws-cn:iam::111122223333:role/admin",
    ],
)
def test_admin_principal_is_a_role_or_user(principal):
    assert load_config(user_context(**{"vidpipe:adminPrincipalArn": principal})).admin_principal_arn == principal


@pytest.mark.parametrize(
    "context",
    [
        {},  # nothing in cdk.json, nothing on the command line
        {"vidpipe:adminPrincipalArn": ""},
    ],
)
def test_missing_admin_principal_names_the_key(context):
    with pytest.raises(ConfigError, match=r"vidpipe:adminPrincipalArn is required") as error:
        load_config({**cdk_json_context(), **context})
    assert "-c vidpipe:adminPrincipalArn=arn:aws:iam::" in str(error.value)  # says how to set it


def test_renamed_admin_key_says_so():
    with pytest.raises(ConfigError, match=r"vidpipe:adminRoleArn was renamed vidpipe:adminPrincipalArn"):
        load_config(user_context(**{"vidpipe:adminRoleArn": "arn:aws:iam::111122223333:role/admin"}))


@pytest.mark.parametrize(
    ("key", "value", "named"),
    [
        ("vidpipe:brokersPerAz", "many", "vidpipe:brokersPerAz"),
        ("vidpipe:kubernetesVersion", "1.33", "vidpipe:kubernetesVersion"),  # out of standard support
        ("vidpipe:brokerInstanceType", "m7g.large", "vidpipe:brokerInstanceType"),
        ("vidpipe:adminPrincipalArn", "arn:aws:iam::123:user/me", "vidpipe:adminPrincipalArn"),
        ("vidpipe:adminPrincipalArn", "arn:aws:iam::111122223333:group/admins", "vidpipe:adminPrincipalArn"),
        (
            "vidpipe:adminPrincipalArn",
            "arn:aws:sts::111122223333:assumed-role/admin/alice",
            "vidpipe:adminPrincipalArn",
        ),
        ("vidpipe:endpointPublicCidrs", ["203.0.113.7"], "vidpipe:endpointPublicCidrs"),
        ("vidpipe:endpointPublicCidrs", ["203.0.113.7/24"], "vidpipe:endpointPublicCidrs"),  # host bits set
        ("vidpipe:endpointPublicCidrs", ["2001:db8::/32"], "vidpipe:endpointPublicCidrs"),
        ("vidpipe:githubRepository", "https://github.com/o/r", "vidpipe:githubRepository"),
        ("vidpipe:githubRepository", "owner-only", "vidpipe:githubRepository"),
        ("vidpipe:githubEnvironment", "prod env", "vidpipe:githubEnvironment"),
        (
            "vidpipe:githubOidcProviderArn",
            "arn:aws:iam::111122223333:oidc-provider/example.com",
            "vidpipe:githubOidcProviderArn",
        ),
        (
            "vidpipe:inferenceNodes",
            {"instanceTypes": ["c7i.xlarge"], "minSize": 3, "desiredSize": 2, "maxSize": 6},
            "vidpipe:inferenceNodes",
        ),
        # The inference pod is sized from committed figures: a type without them, or two pod shapes, is refused.
        (
            "vidpipe:inferenceNodes",
            {"instanceTypes": ["m5.xlarge"], "minSize": 1, "desiredSize": 2, "maxSize": 6},
            "vidpipe:inferenceNodes.instanceTypes: no committed figures for instance type 'm5.xlarge'",
        ),
        (
            "vidpipe:inferenceNodes",
            {"instanceTypes": ["c7i.xlarge", "c6i.xlarge"], "minSize": 1, "desiredSize": 2, "maxSize": 6},
            "vidpipe:inferenceNodes.instanceTypes: c7i.xlarge, c6i.xlarge give inference pods of different",
        ),
        ("vidpipe:topics", {"partitions": 0}, "vidpipe:topics.partitions"),
        ("vidpipe:streams", [{"id": "lobby", "source": "secret:lobby", "port": 554}], "vidpipe:streams[lobby].port"),
        ("vidpipe:streams", [{"id": "lobby"}], "vidpipe:streams[lobby].source: Field required"),
        ("vidpipe:cameraSecretArns", ["arn:aws:secretsmanager:eu-west-1:1:secret:x"], "vidpipe:cameraSecretArns"),
        ("vidpipe:cameraPorts", [0], "vidpipe:cameraPorts"),
        ("vidpipe:flowLogRetentionDays", 10, "vidpipe:flowLogRetentionDays"),
        ("vidpipe:environment", "Prod!", "vidpipe:environment"),
    ],
)
def test_bad_value_names_the_context_key(key, value, named):
    context = user_context(**{key: value})
    with pytest.raises(ConfigError) as error:
        load_config(context)
    assert named in str(error.value)


def test_cross_field_rule_names_both_keys():
    with pytest.raises(ConfigError, match=r"vidpipe:replicationFactor .*vidpipe:brokersPerAz"):
        load_config(user_context(**{"vidpipe:maxAzs": 2, "vidpipe:replicationFactor": 3}))


def test_unknown_key_is_refused():
    with pytest.raises(ConfigError, match="vidpipe:brokerCount"):
        load_config(user_context(**{"vidpipe:brokerCount": 3}))


def test_synth_fails_with_the_key_in_the_message(tmp_path_factory, clean_env):
    import aws_cdk as cdk

    from cdk_app.app import build_platform

    app = cdk.App(
        context=session_context(tmp_path_factory, **{"vidpipe:brokerVolumeGiB": -5}),
        outdir=str(tmp_path_factory.mktemp("bad")),
    )
    with pytest.raises(ConfigError, match="vidpipe:brokerVolumeGiB"):
        build_platform(app)


def test_synth_without_admin_principal_fails_naming_the_key(tmp_path_factory, clean_env):
    import aws_cdk as cdk

    from cdk_app.app import build_platform

    context = session_context(tmp_path_factory)
    del context["vidpipe:adminPrincipalArn"]
    app = cdk.App(context=context, outdir=str(tmp_path_factory.mktemp("no-admin")))
    with pytest.raises(ConfigError, match=r"vidpipe:adminPrincipalArn is required"):
        build_platform(app)


def test_missing_model_fails_synth_with_how_to_fix(tmp_path_factory, clean_env):
    import aws_cdk as cdk

    from cdk_app.app import build_platform
    from cdk_app.constructs.model_artifact import ModelMissingError

    empty = tmp_path_factory.mktemp("no-model")
    app = cdk.App(
        context=session_context(tmp_path_factory, **{"vidpipe:modelDir": str(empty)}),
        outdir=str(tmp_path_factory.mktemp("nomodel")),
    )
    with pytest.raises(ModelMissingError, match=r"make model"):
        build_platform(app)


def test_a_source_with_credentials_fails_naming_the_streams_key_without_repeating_it(tmp_path_factory, clean_env):
    # A URL with credentials in cdk.json would land in the template and a ConfigMap: it goes to a secret instead.
    import aws_cdk as cdk

    from cdk_app.app import build_platform

    streams = [{"id": "lobby", "source": "rtsp://admin:s3cret@camera-lobby.internal:554/s1"}]
    app = cdk.App(
        context=session_context(tmp_path_factory, **{"vidpipe:streams": streams}),
        outdir=str(tmp_path_factory.mktemp("streams")),
    )
    with pytest.raises(ConfigError, match=r"vidpipe:streams\[lobby\]\.source") as caught:
        build_platform(app)
    message = str(caught.value)
    assert "secret:<key>" in message and "s3cret" not in message and "rtsp://" not in message and "admin" not in message


def test_the_analytics_key_is_gone_and_says_where_lines_and_zones_went():
    with pytest.raises(ConfigError, match=r"vidpipe:analytics is gone: .*vidpipe:streams"):
        load_config(user_context(**{"vidpipe:analytics": {"lobby": {"lines": []}}}))


def test_broker_configuration_follows_the_contract_and_the_topics_setting():
    # The MSK configuration carries the contract's record limit and the configured partitions and
    # replication; a topics override reaches the brokers and the charts' wiring alike.
    from vidpipe import contract

    def server(config) -> dict[str, str]:
        return dict(line.split("=", 1) for line in config.server_properties().splitlines())

    default = server(load_config(user_context()))
    assert default["message.max.bytes"] == default["replica.fetch.max.bytes"] == str(contract.MAX_MESSAGE_BYTES)
    assert default["num.partitions"] == str(contract.DEFAULT_PARTITIONS)
    config = load_config(
        user_context(
            **{
                "vidpipe:topics": {"partitions": 12, "frames": "cams.frames"},
                "vidpipe:replicationFactor": 2,
                "vidpipe:minInsyncReplicas": 1,
            }
        )
    )
    changed = server(config)
    assert (changed["num.partitions"], changed["default.replication.factor"], changed["min.insync.replicas"]) == (
        "12",
        "2",
        "1",
    )
    assert (config.topics.frames, config.topics.results) == ("cams.frames", contract.RESULTS_TOPIC)


def test_cdk_json_holds_overrides_only():
    # Defaults live in code (cdk_app/config.py) once: a vidpipe:* key in cdk.json must change something.
    defaults = PlatformConfig.model_construct().model_dump(by_alias=True)
    configured = load_config(user_context()).model_dump(by_alias=True)
    for key in cdk_json_context():
        if key.startswith("vidpipe:"):
            name = key.removeprefix("vidpipe:")
            assert configured[name] != defaults.get(name), f"{key} repeats the default in cdk_app/config.py"


def test_cdk_app_without_admin_principal_exits_naming_the_key(tmp_path):
    """What `npx cdk synth|deploy` prints without -c vidpipe:adminPrincipalArn: one line, no traceback."""
    import json
    import os
    import subprocess
    import sys

    from tests.infra.cdk_support import ROOT

    env = {**os.environ, "CDK_CONTEXT_JSON": json.dumps(cdk_json_context()), "CDK_OUTDIR": str(tmp_path)}
    env.pop("CDK_DEFAULT_ACCOUNT", None)
    result = subprocess.run([sys.executable, "app.py"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "error: " in result.stderr and "vidpipe:adminPrincipalArn is required" in result.stderr
    assert "Traceback" not in result.stderr
