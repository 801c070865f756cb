"""CloudWatch Logs accepts a fixed set of retention periods; config values are checked against it."""

from __future__ import annotations

from aws_cdk import aws_logs as logs

from .config import LOG_RETENTION_DAYS

_NAMES = (
    "ONE_DAY",
    "THREE_DAYS",
    "FIVE_DAYS",
    "ONE_WEEK",
    "TWO_WEEKS",
    "ONE_MONTH",
    "TWO_MONTHS",
    "THREE_MONTHS",
    "FOUR_MONTHS",
    "FIVE_MONTHS",
    "SIX_MONTHS",
    "ONE_YEAR",
    "THIRTEEN_MONTHS",
    "EIGHTEEN_MONTHS",
    "TWO_YEARS",
    "FIVE_YEARS",
    "TEN_YEARS",
)
_BY_DAYS = dict(zip(LOG_RETENTION_DAYS, _NAMES, strict=True))


def log_retention(days: int) -> logs.RetentionDays:
    return getattr(logs.RetentionDays, _BY_DAYS[days])
