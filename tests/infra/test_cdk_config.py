"""Configuration comes from CDK context, parsed once; a bad value fails synth naming the key."""
from __future__ import annotations

import pytest

from cdk_app.config import ConfigError, PlatformConfig, load_config

from cdk_support import cdk_json_context, session_context

pytestmark = pytest.mark.infra


def test_cdk_json_context_is_valid_and_typed():
    config = load_config(cdk_json_context())
    assert isinstance(config, PlatformConfig)
    assert config.kubernetes_version == "1.33"
    assert config.broker_count == 3
    assert config.inference_nodes.instance_types == ["c6i.xlarge"]
    assert config.admin_role_arn is None  # "" in cdk.json means: no admin access entry


def test_command_line_strings_are_coerced():
    # `cdk synth -c vidpipe:brokersPerAz=2 -c vidpipe:streams='[...]'` passes strings.
    config = load_config({**cdk_json_context(), "vidpipe:brokersPerAz": "2",
                          "vidpipe:streams": '[{"id": "lobby", "source": "rtsp://cam.local:554/s"}]'})
    assert config.brokers_per_az == 2
    assert config.streams[0].id == "lobby"


@pytest.mark.parametrize(
    ("key", "value", "named"),
    [
        ("vidpipe:brokersPerAz", "many", "vidpipe:brokersPerAz"),
        ("vidpipe:kubernetesVersion", "1.29", "vidpipe:kubernetesVersion"),
        ("vidpipe:brokerInstanceType", "m7g.large", "vidpipe:brokerInstanceType"),
        ("vidpipe:adminRoleArn", "arn:aws:iam::123:user/me", "vidpipe:adminRoleArn"),
        ("vidpipe:inferenceNodes", {"instanceTypes": ["c6i.xlarge"], "minSize": 3, "desiredSize": 2, "maxSize": 6},
         "vidpipe:inferenceNodes"),
        ("vidpipe:topics", {"partitions": 0}, "vidpipe:topics.partitions"),
        ("vidpipe:replicationFactor", 3, None),  # fine alone; see the cross-field case below
        ("vidpipe:flowLogRetentionDays", 10, "vidpipe:flowLogRetentionDays"),
        ("vidpipe:environment", "Prod!", "vidpipe:environment"),
    ],
)
def test_bad_value_names_the_context_key(key, value, named):
    context = {**cdk_json_context(), key: value}
    if named is None:
        load_config(context)
        return
    with pytest.raises(ConfigError) as error:
        load_config(context)
    assert named in str(error.value)


def test_cross_field_rule_names_both_keys():
    with pytest.raises(ConfigError, match=r"vidpipe:replicationFactor .*vidpipe:brokersPerAz"):
        load_config({**cdk_json_context(), "vidpipe:maxAzs": 2, "vidpipe:replicationFactor": 3})


def test_unknown_key_is_refused():
    with pytest.raises(ConfigError, match="vidpipe:brokerCount"):
        load_config({**cdk_json_context(), "vidpipe:brokerCount": 3})


def test_synth_fails_with_the_key_in_the_message(tmp_path_factory, clean_env):
    import aws_cdk as cdk

    from cdk_app.app import build_platform

    app = cdk.App(context=session_context(tmp_path_factory, **{"vidpipe:brokerVolumeGiB": -5}),
                  outdir=str(tmp_path_factory.mktemp("bad")))
    with pytest.raises(ConfigError, match="vidpipe:brokerVolumeGiB"):
        build_platform(app)


def test_missing_model_fails_synth_with_how_to_fix(tmp_path_factory, clean_env):
    import aws_cdk as cdk

    from cdk_app.app import build_platform
    from cdk_app.constructs.model_artifact import ModelMissingError

    empty = tmp_path_factory.mktemp("no-model")
    app = cdk.App(context=session_context(tmp_path_factory, **{"vidpipe:modelDir": str(empty)}),
                  outdir=str(tmp_path_factory.mktemp("nomodel")))
    with pytest.raises(ModelMissingError, match=r"make model"):
        build_platform(app)


def test_stream_the_cluster_cannot_read_fails_naming_the_streams_key(tmp_path_factory, clean_env):
    # A file path exists only on the developer's machine, never inside the publisher's pod.
    import aws_cdk as cdk

    from cdk_app.app import build_platform

    streams = [{"id": "lobby", "source": "/videos/lobby.mp4"}]
    app = cdk.App(context=session_context(tmp_path_factory, **{"vidpipe:streams": streams}),
                  outdir=str(tmp_path_factory.mktemp("streams")))
    with pytest.raises(ConfigError, match=r"vidpipe:streams"):
        build_platform(app)


def test_configured_streams_reach_the_publisher_deployments(tmp_path_factory, clean_env):
    import aws_cdk as cdk

    from cdk_app.app import build_platform

    streams = [{"id": "lobby", "source": "rtsp://camera-lobby.internal:554/s1", "targetFps": 5}]
    outdir = tmp_path_factory.mktemp("with-streams")
    app = cdk.App(context=session_context(tmp_path_factory, **{"vidpipe:streams": streams}), outdir=str(outdir))
    platform = build_platform(app)
    app.synth()
    template = (outdir / f"{platform.compute.artifact_id}.template.json").read_text()
    assert "publisher-lobby" in template and "rtsp://camera-lobby.internal:554/s1" in template
    assert '\\"serviceAccountName\\":\\"frame-publisher\\"' in template


def test_defaults_match_the_services_contract():
    # The infrastructure takes its topic names and limits from the services' contract module.
    from vidpipe import contract

    from cdk_app.config import MAX_MESSAGE_BYTES

    config = load_config(cdk_json_context())
    assert MAX_MESSAGE_BYTES == contract.MAX_MESSAGE_BYTES
    assert (config.topics.frames, config.topics.results, config.topics.dead_letter, config.topics.consumer_group) == (
        contract.FRAMES_TOPIC, contract.RESULTS_TOPIC, contract.DEAD_LETTER_TOPIC, contract.CONSUMER_GROUP)
