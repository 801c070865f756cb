"""Typed settings are read once at start-up; a bad or missing variable stops the service with
a message that names it, instead of a traceback."""

from __future__ import annotations

import sys
from typing import Any, TypeVar

from pydantic import ValidationError
from pydantic_settings import BaseSettings

S = TypeVar("S", bound=BaseSettings)


class ConfigurationError(SystemExit):
    pass


def describe_errors(cls: type[BaseSettings], exc: ValidationError) -> str:
    prefix = (cls.model_config.get("env_prefix") or "").upper()
    lines = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "?"
        variable = f"{prefix}{field}".upper() if not field.isdigit() else field
        given = err.get("input")
        shown = "" if isinstance(given, dict) or given is None else f" (got {str(given)[:60]!r})"
        message = "is required but not set" if err["type"] == "missing" else err["msg"]
        lines.append(f"  {variable}: {message}{shown}")
    return "invalid configuration:\n" + "\n".join(lines)


def load_settings(cls: type[S], **overrides: Any) -> S:
    """Instantiate settings or exit(2) with every problem named by its environment variable."""
    try:
        return cls(**overrides)
    except ValidationError as exc:
        print(describe_errors(cls, exc), file=sys.stderr)
        raise ConfigurationError(2) from None
