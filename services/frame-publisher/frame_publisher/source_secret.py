"""PUBLISHER_SOURCE_SECRET_ARN: the source URL read from AWS Secrets Manager at start-up.

On EKS the publisher's Pod Identity role may read exactly this secret; the URL then exists only in
Secrets Manager and in the publisher's memory, never in a manifest, ConfigMap or template.
The secret string is the URL itself, or a JSON object with a "source" key.
"""

from __future__ import annotations

from typing import Any

from vidpipe.secrets import SECRET_ARN, SecretError, read_secret_string

__all__ = ["SECRET_ARN", "SourceSecretError", "read_source_secret"]


class SourceSecretError(SecretError):
    """The secret cannot be read or holds no source; the message never contains the secret's value."""


def read_source_secret(arn: str, client: Any = None) -> str:  # client: a boto3 secretsmanager client
    try:
        return read_secret_string(arn, "source", client)
    except SecretError as exc:
        raise SourceSecretError(str(exc)) from None
