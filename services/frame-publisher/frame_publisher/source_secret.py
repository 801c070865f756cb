"""The source URL from a secret, read at start-up: PUBLISHER_SOURCE_SECRET_ARN or PUBLISHER_SOURCE_FILE.

SECRET_ARN: on EKS the publisher's Pod Identity role may read exactly this secret; the URL then exists only
in Secrets Manager and in the publisher's memory, never in a manifest, ConfigMap or template.
FILE: a Kubernetes Secret's key mounted as a file; the URL is in no environment variable (which any process
of the pod, a crash dump or `kubectl describe` of an env-from-secret would show).
Either holds the URL itself, or a JSON object with a "source" key (the same secret value works both ways).
"""

from __future__ import annotations

import json
from typing import Any

from vidpipe.secrets import SECRET_ARN, SecretError, read_secret_file, read_secret_string

__all__ = ["SECRET_ARN", "SourceSecretError", "read_source_file", "read_source_secret"]


class SourceSecretError(SecretError):
    """The secret cannot be read or holds no source; the message never contains the secret's value."""


def read_source_secret(arn: str, client: Any = None) -> str:  # client: a boto3 secretsmanager client
    try:
        return read_secret_string(arn, "source", client)
    except SecretError as exc:
        raise SourceSecretError(str(exc)) from None


def read_source_file(path: str, setting: str = "PUBLISHER_SOURCE_FILE") -> str:
    """The source from a mounted file; errors name the setting and the path, never the file's content."""
    try:
        text = read_secret_file(path, setting)
    except SecretError as exc:
        raise SourceSecretError(str(exc)) from None
    if not text.startswith("{"):  # a URL, path or webcam index never starts with '{'
        return text
    try:
        document = json.loads(text)
    except json.JSONDecodeError:
        raise SourceSecretError(f"{setting}: {path} starts with '{{' but is not JSON") from None
    value = document.get("source") if isinstance(document, dict) else None
    if not isinstance(value, str) or not value.strip():
        raise SourceSecretError(f'{setting}: {path} is JSON without a non-empty string "source" key')
    return value.strip()
