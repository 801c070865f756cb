"""The consumer's inference API token: from CONSUMER_INFERENCE_TOKEN, _FILE or _SECRET_ARN, read once at
start-up; a secret that cannot be read stops the consumer with exit 2 naming the variable, never the value."""

from __future__ import annotations

import boto3
import pytest
from moto import mock_aws
from pydantic import ValidationError

from consumer_service.__main__ import inference_token
from consumer_service.settings import ConsumerSettings
from vidpipe.config import ConfigurationError

TOKEN = "tok-7f3a9c"


def settings(**values) -> ConsumerSettings:
    return ConsumerSettings(inference_url="http://inference:8080", archive_uri="/tmp/a", **values)


def exits(capsys, **values) -> str:
    with pytest.raises(ConfigurationError) as raised:
        inference_token(settings(**values))
    assert raised.value.code == 2
    message = capsys.readouterr().err
    assert TOKEN not in message
    return message


def test_no_token_is_none_and_a_value_is_itself():
    assert inference_token(settings()) is None
    assert inference_token(settings(inference_token=TOKEN)) == TOKEN
    assert TOKEN not in repr(settings(inference_token=TOKEN)), "never printed with the settings"


def test_a_mounted_file(tmp_path, capsys):
    path = tmp_path / "token"
    path.write_text(f"{TOKEN}\n")
    assert inference_token(settings(inference_token_file=str(path))) == TOKEN
    assert "CONSUMER_INFERENCE_TOKEN_FILE" in exits(capsys, inference_token_file=str(tmp_path / "absent"))
    (tmp_path / "empty").write_text("\n")
    assert "is empty" in exits(capsys, inference_token_file=str(tmp_path / "empty"))


def test_only_one_source(tmp_path, capsys):
    path = tmp_path / "token"
    path.write_text(TOKEN)
    message = exits(capsys, inference_token=TOKEN, inference_token_file=str(path))
    assert "CONSUMER_INFERENCE_TOKEN, CONSUMER_INFERENCE_TOKEN_FILE" in message


def test_a_secrets_manager_secret_plain_or_json(capsys, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        secrets = boto3.client("secretsmanager", region_name="eu-west-1")
        plain = secrets.create_secret(Name="plain", SecretString=TOKEN)["ARN"]
        as_json = secrets.create_secret(Name="json", SecretString=f'{{"token": "{TOKEN}"}}')["ARN"]
        assert inference_token(settings(inference_token_secret_arn=plain)) == TOKEN
        assert inference_token(settings(inference_token_secret_arn=as_json)) == TOKEN
        missing = plain.replace(":secret:plain", ":secret:absent")
        message = exits(capsys, inference_token_secret_arn=missing)
    assert message.startswith("invalid configuration:\n  CONSUMER_INFERENCE_TOKEN_SECRET_ARN: cannot read secret")


def test_an_arn_that_is_not_one_is_refused_at_load_naming_the_variable():
    with pytest.raises(ValidationError, match="CONSUMER_INFERENCE_TOKEN_SECRET_ARN must be a Secrets Manager"):
        settings(inference_token_secret_arn="my-token")
