"""Kafka client settings shared by every service: one place for bootstrap, auth, and size limits.

Local and self-managed brokers use PLAINTEXT (or TLS); Amazon MSK uses SASL OAUTHBEARER with
IAM tokens from aws-msk-iam-sasl-signer-python over TLS (listeners on port 9098).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .contract import MAX_MESSAGE_BYTES, TopicSpec

if TYPE_CHECKING:
    from confluent_kafka import Producer

log = logging.getLogger(__name__)


class KafkaAuth(StrEnum):
    NONE = "none"
    MSK_IAM = "msk-iam"


class KafkaSettings(BaseSettings):
    """Connection settings, read from KAFKA_* variables (see env.example)."""

    model_config = SettingsConfigDict(env_prefix="KAFKA_", env_ignore_empty=True, extra="ignore")

    bootstrap: str = Field(description="Comma-separated host:port list of brokers")
    auth: KafkaAuth = KafkaAuth.NONE
    tls: bool = False
    aws_region: str | None = Field(default=None, description="Region for MSK IAM tokens (falls back to AWS_REGION)")
    client_id: str = "vidpipe"

    @field_validator("bootstrap")
    @classmethod
    def _check_bootstrap(cls, value: str) -> str:
        return normalize_bootstrap(value)


def normalize_bootstrap(value: str) -> str:
    """A comma-separated host:port list, blanks removed; ValueError names the entry at fault."""
    hosts = [h.strip() for h in value.split(",") if h.strip()]
    if not hosts:
        raise ValueError("must list at least one host:port")
    for host in hosts:
        name, sep, port = host.rpartition(":")
        if not sep or not name or not port.isdigit():
            raise ValueError(f"{host!r} is not host:port")
    return ",".join(hosts)


def msk_iam_token_callback(region: str) -> Callable[[str], tuple[str, float]]:
    """An oauth_cb for confluent-kafka that signs MSK IAM tokens with the pod's AWS identity."""
    from aws_msk_iam_sasl_signer import MSKAuthTokenProvider

    def oauth_cb(_config: str) -> tuple[str, float]:
        token, expiry_ms = MSKAuthTokenProvider.generate_auth_token(region)
        return token, expiry_ms / 1000.0

    return oauth_cb


def _region(settings: KafkaSettings) -> str:
    import os

    region = settings.aws_region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if not region:
        raise ValueError("KAFKA_AWS_REGION (or AWS_REGION) must be set when KAFKA_AUTH=msk-iam")
    return region


def common_config(settings: KafkaSettings) -> dict[str, Any]:
    config: dict[str, Any] = {
        "bootstrap.servers": settings.bootstrap,
        "client.id": settings.client_id,
    }
    if settings.auth is KafkaAuth.MSK_IAM:
        # MSK IAM listeners always use TLS.
        config.update(
            {
                "security.protocol": "SASL_SSL",
                "sasl.mechanisms": "OAUTHBEARER",
                "oauth_cb": msk_iam_token_callback(_region(settings)),
            }
        )
    elif settings.tls:
        config["security.protocol"] = "SSL"
    return config


def producer_config(settings: KafkaSettings, **overrides: Any) -> dict[str, Any]:
    """Idempotent, acks=all producer whose size limit matches the topics' max.message.bytes."""
    config = common_config(settings)
    config.update(
        {
            "enable.idempotence": True,
            "acks": "all",
            "message.max.bytes": MAX_MESSAGE_BYTES,
            "compression.type": "none",  # JPEG does not compress further
            # Frames are ~50-300 KB: batches as large as the topic allows move ~3x more frames/s
            # than 1 MiB ones on the same broker (bench: transport); a short linger keeps a
            # live stream's latency low when batches do not fill.
            "linger.ms": 5,
            "batch.size": MAX_MESSAGE_BYTES,
        }
    )
    config.update(overrides)
    return config


def consumer_config(settings: KafkaSettings, group_id: str, **overrides: Any) -> dict[str, Any]:
    """At-least-once consumer: offsets are committed explicitly after results are stored."""
    config = common_config(settings)
    config.update(
        {
            "group.id": group_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "partition.assignment.strategy": "cooperative-sticky",
            "max.partition.fetch.bytes": MAX_MESSAGE_BYTES,
            "fetch.max.bytes": 4 * MAX_MESSAGE_BYTES,
            "fetch.message.max.bytes": MAX_MESSAGE_BYTES,
            # The broker answers a fetch as soon as there is data, or after 50 ms (default 500):
            # frames of a slow stream do not sit on the broker.
            "fetch.wait.max.ms": 50,
        }
    )
    config.update(overrides)
    return config


def admin_config(settings: KafkaSettings) -> dict[str, Any]:
    return common_config(settings)


def ensure_topics(settings: KafkaSettings, specs: Iterable[TopicSpec], timeout_s: float = 30.0) -> list[str]:
    """Create the contract's topics if missing (idempotent); returns the names it created."""
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient(admin_config(settings))
    new = [NewTopic(s.name, num_partitions=s.partitions, replication_factor=-1, config=s.config) for s in specs]
    created: list[str] = []
    deadline = time.monotonic() + timeout_s
    for name, future in admin.create_topics(new, request_timeout=timeout_s).items():
        try:
            future.result(timeout=max(1.0, deadline - time.monotonic()))
            created.append(name)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
    if created:
        log.info("created topics %s", created)
    return created


def is_fatal(error: object) -> bool:
    """Whether a KafkaError, or a KafkaException carrying one, ends its client instance. librdkafka's
    idempotent producer raises these when its sequence numbers no longer match the broker's (seen after
    broker restarts): nothing it holds is delivered any more and every later produce fails, so the only
    way on is a new producer."""
    from confluent_kafka import KafkaError, KafkaException

    if isinstance(error, KafkaException):
        error = error.args[0] if error.args else None
    return isinstance(error, KafkaError) and (error.fatal() or error.code() == KafkaError._FATAL)


def retire_producer(producer: Any) -> None:
    """Drop what a failed producer still holds, without waiting on the broker; its delivery callbacks
    run now, with purge errors."""
    from confluent_kafka import KafkaException

    try:
        producer.purge(in_queue=True, in_flight=True, blocking=False)
        producer.flush(0)
    except (KafkaException, RuntimeError) as exc:
        log.warning("could not purge the failed producer: %s", exc)


class ReplaceableProducer:
    """A service's producer, and the one that replaces it after a fatal error (is_fatal): the failure is
    noted (librdkafka's error_cb, or what produce() raised) and the replacement made here, for every
    service; each decides what its failed producer's messages mean (replay, produce again, count)."""

    def __init__(self, settings: KafkaSettings, client_id: str):
        self._config = producer_config(settings, **{"client.id": client_id, "error_cb": self.note_error})
        self.failed: str | None = None  # the fatal error, until replace()
        self.current: Producer = self._make()

    def _make(self) -> Producer:
        from confluent_kafka import Producer

        return Producer(self._config)

    def note_error(self, error: object) -> bool:
        """Note a fatal error; True if it was one (every other error librdkafka retries itself)."""
        if not is_fatal(error):
            return False
        self.failed = self.failed or str(error)
        return True

    def replace(self) -> str:
        """A new producer for the failed one, whose messages are purged (their delivery reports run now,
        with purge errors); returns why it failed."""
        reason = self.failed or "producer failed"
        failed, self.current = self.current, self._make()
        self.failed = None
        retire_producer(failed)
        return reason
