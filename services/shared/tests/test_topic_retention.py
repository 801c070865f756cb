"""The dead-letter topic keeps its records for its own TOPICS_DEAD_LETTER_RETENTION_HOURS (default a week),
no longer tied to the results topic's retention."""

from vidpipe.topics import TopicSettings


def retention_hours(settings: TopicSettings) -> dict[str, float]:
    return {s.name: int(s.config["retention.ms"]) / 3_600_000 for s in settings.specs() if "retention.ms" in s.config}


def test_dead_letter_retention_is_its_own_setting(monkeypatch):
    monkeypatch.setenv("TOPICS_DEAD_LETTER_RETENTION_HOURS", "24")
    monkeypatch.setenv("TOPICS_RESULTS_RETENTION_HOURS", "720")
    hours = retention_hours(TopicSettings(dead_letter="dlq", results="results"))
    assert (hours["dlq"], hours["results"]) == (24, 720)


def test_dead_letters_are_kept_a_week_by_default():
    assert retention_hours(TopicSettings(dead_letter="dlq"))["dlq"] == 168
