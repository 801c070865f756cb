"""Topics of their own for one run (a test, a bench stage) on a shared broker: never the contract's default
names, which other runs, a demo or a deployment on the same broker may fill."""

from __future__ import annotations

import uuid

from vidpipe.kafka import KafkaSettings, ensure_topics
from vidpipe.topics import TopicSettings


def fresh_topics(
    kafka: KafkaSettings,
    prefix: str = "t",
    partitions: int = 3,
    streams_partitions: int = 4,
    events: bool = True,
) -> TopicSettings:
    """Created through the admin API as the services create theirs; `events=False` leaves the events topic at
    its default name (runs that never read events)."""
    run = f"{prefix}-{uuid.uuid4().hex[:8]}"
    named = {
        "frames": f"{run}.frames",
        "results": f"{run}.results",
        "dead_letter": f"{run}.dlq",
        "streams": f"{run}.streams",
        "streams_status": f"{run}.status",
    }
    if events:
        named["events"] = f"{run}.events"
    settings = TopicSettings(**named, partitions=partitions, streams_partitions=streams_partitions)
    ensure_topics(kafka, settings.specs())
    return settings
