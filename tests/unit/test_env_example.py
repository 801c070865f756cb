"""env.example documents exactly the variables the services read."""

import re
from pathlib import Path

from analytics_service.settings import AnalyticsSettings
from consumer_service.settings import ConsumerSettings
from frame_publisher.settings import PublisherSettings
from inference_service.settings import InferenceSettings
from vidpipe.kafka import KafkaSettings
from vidpipe.topics import TopicSettings

ENV_EXAMPLE = Path(__file__).resolve().parents[2] / "env.example"
SETTINGS = (KafkaSettings, TopicSettings, PublisherSettings, ConsumerSettings, InferenceSettings, AnalyticsSettings)


def test_env_example_matches_settings_classes():
    documented = set(re.findall(r"^([A-Z][A-Z0-9_]+)=", ENV_EXAMPLE.read_text(), re.MULTILINE))
    read = {f"{cls.model_config['env_prefix']}{name}".upper() for cls in SETTINGS for name in cls.model_fields}
    assert read - documented == set(), "undocumented variables"
    assert documented - read == set(), "documented variables nothing reads"
    # Only live lines count: a variable the services read is never documented as a commented-out line
    # (that would pass a search for its name while a copied env.example leaves it unset), nor twice.
    commented = set(re.findall(r"^#\s*([A-Z][A-Z0-9_]+)=", ENV_EXAMPLE.read_text(), re.MULTILINE))
    assert commented & read == set(), "settings documented only as comments"
    lines = re.findall(r"^([A-Z][A-Z0-9_]+)=", ENV_EXAMPLE.read_text(), re.MULTILINE)
    assert len(lines) == len(set(lines)), "a variable documented twice"


def test_env_example_values_load_as_is(monkeypatch):
    """A copied env.example, empty values included, is a valid configuration."""
    for name, value in re.findall(r"^([A-Z][A-Z0-9_]+)=(.*)$", ENV_EXAMPLE.read_text(), re.MULTILINE):
        monkeypatch.setenv(name, value)
    for cls in SETTINGS:
        cls()
