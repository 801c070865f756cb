"""PUBLISHER_SOURCE_SECRET_ARN: the source URL read from AWS Secrets Manager at start-up.

On EKS the publisher's Pod Identity role may read exactly this secret; the URL then exists only in
Secrets Manager and in the publisher's memory, never in a manifest, ConfigMap or template.
The secret string is the URL itself, or a JSON object with a "source" key.
"""

from __future__ import annotations

import json
import re
from typing import Any

SECRET_ARN = re.compile(r"^arn:aws[a-z-]*:secretsmanager:([a-z0-9-]+):\d{12}:secret:[A-Za-z0-9/_+=.@-]+$")


class SourceSecretError(RuntimeError):
    """The secret cannot be read or holds no source; the message never contains the secret's value."""


def read_source_secret(arn: str, client: Any = None) -> str:  # client: a boto3 secretsmanager client
    match = SECRET_ARN.match(arn)
    if not match:
        raise SourceSecretError(f"{arn!r} is not a Secrets Manager secret ARN")
    if client is None:
        import boto3  # vidpipe's dependency; only loaded when a secret is used

        client = boto3.client("secretsmanager", region_name=match.group(1))
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        response = client.get_secret_value(SecretId=arn)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        raise SourceSecretError(
            f"cannot read secret {arn}: {error.get('Code', 'error')}: {error.get('Message', '')}"
        ) from None
    except BotoCoreError as exc:
        raise SourceSecretError(f"cannot read secret {arn}: {exc}") from None
    text = response.get("SecretString")
    if not isinstance(text, str) or not text.strip():
        raise SourceSecretError(f"secret {arn} has no string value (store the source URL as the secret string)")
    text = text.strip()
    if text.startswith("{"):
        try:
            document = json.loads(text)
        except json.JSONDecodeError:
            raise SourceSecretError(f"secret {arn} starts with '{{' but is not JSON") from None
        source = document.get("source") if isinstance(document, dict) else None
        if not isinstance(source, str) or not source.strip():
            raise SourceSecretError(f'secret {arn} is JSON without a non-empty string "source" key')
        return source.strip()
    return text
