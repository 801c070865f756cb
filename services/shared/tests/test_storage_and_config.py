"""Storage backends share one interface and the documented key layout; settings errors name variables."""

import boto3
import pytest
from moto import mock_aws

from vidpipe.config import ConfigurationError, load_settings
from vidpipe.kafka import KafkaAuth, KafkaSettings, common_config, consumer_config, producer_config
from vidpipe.storage import LocalStorage, S3Storage, frame_key, is_outage, open_storage, results_key

EPOCH = 1_699_999_000_000_000


def test_key_layout_is_by_stream_capture_date_and_publisher_run():
    ts = 1_700_000_000_000_000  # 2023-11-14 UTC
    assert frame_key("cam_1", EPOCH, ts, 42) == "frames/cam_1/2023-11-14/1699999000000000-000000000042.jpg"
    assert (
        results_key("cam", EPOCH, ts, 1, 9) == "results/cam/2023-11-14/1699999000000000-000000000001-000000000009.jsonl"
    )


def test_a_restarted_publisher_never_shares_keys_with_its_earlier_run():
    ts = 1_700_000_000_000_000
    assert frame_key("cam", EPOCH, ts, 0) != frame_key("cam", EPOCH + 1, ts, 0)
    assert results_key("cam", EPOCH, ts, 0, 15) != results_key("cam", EPOCH + 1, ts, 0, 15)


def test_distinct_streams_never_share_keys_and_invalid_ids_are_refused():
    ts = 1_700_000_000_000_000
    assert frame_key("cam_1", 0, ts, 1) != frame_key("cam-1", 0, ts, 1) != frame_key("cam.1", 0, ts, 1)
    for bad in ("cam/1", "..", ".hidden", "", "c" * 129, "cam 1"):
        with pytest.raises(ValueError, match="not a valid stream id"):
            frame_key(bad, 0, ts, 1)


def test_put_new_never_replaces_an_object_in_a_folder(tmp_path):
    storage = LocalStorage(tmp_path)
    assert storage.put_new("frames/a/x.jpg", b"first") is True
    assert storage.put_new("frames/a/x.jpg", b"second") is False
    assert storage.get("frames/a/x.jpg") == b"first" and storage.list() == ["frames/a/x.jpg"]


@mock_aws
def test_put_new_never_adds_a_version_in_a_versioned_bucket():
    client = boto3.client("s3", region_name="us-east-1")
    client.create_bucket(Bucket="archive-bucket")
    client.put_bucket_versioning(Bucket="archive-bucket", VersioningConfiguration={"Status": "Enabled"})
    storage = S3Storage("archive-bucket", "archive", client=client)
    assert storage.put_new("frames/a/x.jpg", b"first") is True
    assert storage.put_new("frames/a/x.jpg", b"second") is False
    versions = client.list_object_versions(Bucket="archive-bucket")["Versions"]
    assert [v["Key"] for v in versions] == ["archive/frames/a/x.jpg"] and storage.get("frames/a/x.jpg") == b"first"


def test_storage_outages_are_told_from_refused_writes():
    from botocore.exceptions import ClientError, EndpointConnectionError

    def client_error(code: str, status: int) -> ClientError:
        return ClientError({"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "PutObject")

    assert is_outage(EndpointConnectionError(endpoint_url="http://s3"))
    assert is_outage(client_error("SlowDown", 503)) and is_outage(client_error("AccessDenied", 403))
    assert is_outage(OSError(28, "No space left on device"))
    assert not is_outage(client_error("KeyTooLongError", 400)) and not is_outage(client_error("EntityTooLarge", 400))
    assert not is_outage(OSError(36, "File name too long")) and not is_outage(
        ValueError("year 9999999 is out of range")
    )


def test_local_storage_round_trip_and_refuses_escape(tmp_path):
    storage = open_storage(str(tmp_path / "archive"))
    assert isinstance(storage, LocalStorage)
    storage.put("frames/a/1.jpg", b"x")
    assert storage.get("frames/a/1.jpg") == b"x" and storage.list("frames/") == ["frames/a/1.jpg"]
    with pytest.raises(ValueError, match="escapes"):
        storage.put("../outside", b"x")


def test_s3_storage_under_prefix():
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="archive")
        storage = open_storage("s3://archive/video/", s3_client=client)
        assert isinstance(storage, S3Storage)
        storage.put("frames/cam/1.jpg", b"jpeg", "image/jpeg")
        head = client.head_object(Bucket="archive", Key="video/frames/cam/1.jpg")
        assert head["ContentType"] == "image/jpeg"
        assert storage.list("frames/") == ["frames/cam/1.jpg"]


@pytest.mark.parametrize("uri", ["ftp://x/y", ""])
def test_unsupported_storage_uri(uri):
    with pytest.raises(ValueError):
        open_storage(uri)


def test_missing_and_malformed_variables_are_named(monkeypatch, capsys):
    monkeypatch.delenv("KAFKA_BOOTSTRAP", raising=False)
    with pytest.raises(ConfigurationError):
        load_settings(KafkaSettings)
    assert "KAFKA_BOOTSTRAP: is required" in capsys.readouterr().err
    monkeypatch.setenv("KAFKA_BOOTSTRAP", "localhost")
    with pytest.raises(ConfigurationError):
        load_settings(KafkaSettings)
    assert "KAFKA_BOOTSTRAP" in capsys.readouterr().err


def test_kafka_client_limits_match_the_contract():
    settings = KafkaSettings(bootstrap="127.0.0.1:9092")
    producer = producer_config(settings)
    assert producer["enable.idempotence"] is True and producer["acks"] == "all"
    assert producer["message.max.bytes"] == 8 * 1024 * 1024
    consumer = consumer_config(settings, "g")
    assert consumer["enable.auto.commit"] is False and consumer["max.partition.fetch.bytes"] == 8 * 1024 * 1024


def test_msk_iam_uses_oauthbearer_over_tls_with_signed_tokens(monkeypatch):
    settings = KafkaSettings(bootstrap="b-1.example:9098", auth=KafkaAuth.MSK_IAM, aws_region="eu-west-1")
    config = common_config(settings)
    assert (config["security.protocol"], config["sasl.mechanisms"]) == ("SASL_SSL", "OAUTHBEARER")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    token, expiry = config["oauth_cb"](None)
    assert token and expiry > 0


def test_msk_iam_without_region_is_a_clear_error(monkeypatch):
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ValueError, match="KAFKA_AWS_REGION"):
        common_config(KafkaSettings(bootstrap="b:9098", auth="msk-iam"))
