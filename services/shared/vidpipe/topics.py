"""Topic names and creation settings, shared by every service (TOPICS_* variables).

`python -m vidpipe.topics` creates the topics on the configured broker (idempotent).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from .contract import (
    DEAD_LETTER_TOPIC,
    DEFAULT_PARTITIONS,
    EVENTS_TOPIC,
    FRAMES_TOPIC,
    RESULTS_TOPIC,
    TopicSpec,
    topic_specs,
)
from .stream_registry import REGISTRY_PARTITIONS, STREAMS_TOPIC, registry_topic_spec
from .stream_status import STATUS_TOPIC, status_topic_spec

if TYPE_CHECKING:
    from .kafka import KafkaSettings


class TopicSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TOPICS_", env_ignore_empty=True, extra="ignore")

    frames: str = FRAMES_TOPIC
    results: str = RESULTS_TOPIC
    dead_letter: str = DEAD_LETTER_TOPIC
    events: str = EVENTS_TOPIC
    streams: str = Field(default=STREAMS_TOPIC, description="The stream registry (compacted)")
    streams_partitions: int = Field(
        default=REGISTRY_PARTITIONS, ge=1, le=1000, description="The most publisher pods that carry streams"
    )
    streams_status: str = Field(
        default=STATUS_TOPIC, description="Each stream's status, as its publisher reports it (compacted)"
    )
    partitions: int = Field(default=DEFAULT_PARTITIONS, ge=1, le=1000)
    frames_retention_hours: float = Field(default=6.0, gt=0)
    results_retention_hours: float = Field(default=168.0, gt=0)
    events_retention_hours: float = Field(default=168.0, gt=0)
    dead_letter_retention_hours: float = Field(default=168.0, gt=0)
    create: bool = Field(default=True, description="Create missing topics at start-up through the admin API")

    def specs(self) -> list[TopicSpec]:
        return topic_specs(
            partitions=self.partitions,
            frames_retention_ms=int(self.frames_retention_hours * 3600 * 1000),
            results_retention_ms=int(self.results_retention_hours * 3600 * 1000),
            frames_topic=self.frames,
            results_topic=self.results,
            dead_letter_topic=self.dead_letter,
            events_topic=self.events,
            events_retention_ms=int(self.events_retention_hours * 3600 * 1000),
            dead_letter_retention_ms=int(self.dead_letter_retention_hours * 3600 * 1000),
        ) + [registry_topic_spec(self.streams, self.streams_partitions), status_topic_spec(self.streams_status)]


def ensure(kafka_settings: KafkaSettings, topic_settings: TopicSettings) -> list[str]:
    from .kafka import ensure_topics

    return ensure_topics(kafka_settings, topic_settings.specs()) if topic_settings.create else []


def main() -> None:
    import logging

    from .config import load_settings
    from .kafka import KafkaSettings, ensure_topics

    logging.basicConfig(level="INFO", format="%(levelname)s %(message)s")
    kafka = load_settings(KafkaSettings)
    topics = load_settings(TopicSettings)
    created = ensure_topics(kafka, topics.specs())
    print(f"topics ready on {kafka.bootstrap}; created: {', '.join(created) or 'none (all existed)'}")


if __name__ == "__main__":
    main()
