"""The source URL from a secret, read at start-up: PUBLISHER_SOURCE_SECRET_ARN or PUBLISHER_SOURCE_FILE; in
registry mode, from each stream's source reference (resolve_reference).

SECRET_ARN: on EKS the publisher's Pod Identity role may read exactly this secret; the URL then exists only
in Secrets Manager and in the publisher's memory, never in a manifest, ConfigMap or template.
FILE: a Kubernetes Secret's key mounted as a file; the URL is in no environment variable (which any process
of the pod, a crash dump or `kubectl describe` of an env-from-secret would show).
Either holds the URL itself, or a JSON object with a "source" key (the same secret value works both ways).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vidpipe.secrets import SECRET_ARN, SecretError, read_secret_file, read_secret_string
from vidpipe.stream_registry import SECRET_PREFIX, source_kind

__all__ = ["SECRET_ARN", "SourceSecretError", "read_source_file", "read_source_secret", "resolve_reference"]


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


def resolve_reference(reference: str, sources_dir: str, client: Any = None) -> str:
    """The source a registry definition refers to (vidpipe.stream_registry.source_kind): `secret:<key>` is
    the file <sources_dir>/<key> (a key of the camera Secret mounted there), a Secrets Manager ARN its
    secret's value, anything else (a URL without credentials, a path) the source itself. Read at each call:
    the kubelet updates a mounted Secret in place, so a changed camera URL is used at the next reconnect."""
    kind = source_kind(reference)
    if kind == "secret":
        key = reference.removeprefix(SECRET_PREFIX)
        path = Path(sources_dir) / key
        if not path.exists():
            raise SourceSecretError(f"{reference}: the camera Secret mounted at {sources_dir} has no key {key!r}")
        return read_source_file(str(path), reference)
    if kind == "secrets_manager":
        return read_source_secret(reference, client)
    return reference
