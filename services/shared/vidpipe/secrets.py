"""Secrets the services read at start-up: a camera URL, the API token.

A secret comes from one of three places, each a setting of the service that needs it:
- the value itself (local runs and tests),
- a file (a mounted Kubernetes Secret: the value never appears in the pod spec or the environment),
- an AWS Secrets Manager secret ARN, read with the pod's own AWS identity (the CDK path: the value
  exists only in Secrets Manager and in the process's memory).
Errors name the setting and the secret, never the value.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

SECRET_ARN = re.compile(r"^arn:aws[a-z-]*:secretsmanager:([a-z0-9-]+):\d{12}:secret:[A-Za-z0-9/_+=.@-]+$")
# A token or URL is a line of text: a larger file is a mistake (the wrong file mounted), not a secret.
MAX_SECRET_BYTES = 64 * 1024


class SecretError(RuntimeError):
    """The secret cannot be read or holds no value; the message never contains the secret's value."""


def check_secret_arn(value: str | None, setting: str) -> str | None:
    """For settings validators: the ARN, or ValueError naming the setting."""
    if value is not None and not SECRET_ARN.match(value):
        raise ValueError(
            f"{setting} must be a Secrets Manager secret ARN (arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME)"
        )
    return value


def read_secret_string(arn: str, json_key: str | None = None, client: Any = None) -> str:
    """The secret's string, stripped; with json_key, a JSON object's string under that key may hold it
    instead. client: a boto3 secretsmanager client (made for the ARN's region when None)."""
    match = SECRET_ARN.match(arn)
    if not match:
        raise SecretError(f"{arn!r} is not a Secrets Manager secret ARN")
    if client is None:
        import boto3  # vidpipe's dependency; only loaded when a secret is used

        client = boto3.client("secretsmanager", region_name=match.group(1))
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        response = client.get_secret_value(SecretId=arn)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        raise SecretError(
            f"cannot read secret {arn}: {error.get('Code', 'error')}: {error.get('Message', '')}"
        ) from None
    except BotoCoreError as exc:
        raise SecretError(f"cannot read secret {arn}: {exc}") from None
    text = response.get("SecretString")
    if not isinstance(text, str) or not text.strip():
        raise SecretError(f"secret {arn} has no string value")
    text = text.strip()
    if json_key is not None and text.startswith("{"):
        try:
            document = json.loads(text)
        except json.JSONDecodeError:
            raise SecretError(f"secret {arn} starts with '{{' but is not JSON") from None
        value = document.get(json_key) if isinstance(document, dict) else None
        if not isinstance(value, str) or not value.strip():
            raise SecretError(f'secret {arn} is JSON without a non-empty string "{json_key}" key')
        return value.strip()
    return text


def read_secret_file(path: str, setting: str) -> str:
    """A mounted secret's value (one line; surrounding whitespace stripped)."""
    file = Path(path)
    try:
        size = file.stat().st_size
        if size > MAX_SECRET_BYTES:
            raise SecretError(f"{setting}: {path} is {size} bytes; a secret file holds one value")
        text = file.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise SecretError(f"{setting}: cannot read {path}: {type(exc).__name__}") from None
    if not text:
        raise SecretError(f"{setting}: {path} is empty")
    return text


def resolve_secret(
    name: str,
    value: str | None = None,
    file: str | None = None,
    arn: str | None = None,
    json_key: str | None = None,
    client: Any = None,
) -> str | None:
    """The secret from whichever of value, file or ARN is set (at most one may be); None when none is.
    name: the settings' stem for messages, e.g. INFERENCE_API_TOKEN (its _FILE and _SECRET_ARN siblings)."""
    given = [n for n, v in ((name, value), (f"{name}_FILE", file), (f"{name}_SECRET_ARN", arn)) if v]
    if len(given) > 1:
        raise SecretError(f"set only one of {', '.join(given)}")
    if value:
        return value
    if file:
        return read_secret_file(file, f"{name}_FILE")
    if arn:
        return read_secret_string(arn, json_key, client)
    return None
