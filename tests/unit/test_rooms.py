"""Every deployed service is one folder holding its runtime, its image's declarations, its deploy unit and
its own tests; the suites that span services stay under tests/."""

from __future__ import annotations

from pathlib import Path

from vidpipe_deploy.registry import FOLDERS, SERVICES_DIR

ROOT = Path(__file__).resolve().parents[2]
CROSS_SERVICE = {"unit", "integration", "faults", "images", "browser", "soak", "infra", "k8s", "fixtures"}


def test_each_registered_service_is_a_room():
    for folder in FOLDERS:
        room = SERVICES_DIR / folder
        assert (room / "pyproject.toml").is_file() and (room / "requirements.lock").is_file(), folder
        assert (room / "deploy.py").is_file(), f"{folder}: its deploy unit"
        assert sorted((room / "tests").glob("test_*.py")), f"{folder}: its own tests"
    assert sorted((SERVICES_DIR / "shared" / "tests").glob("test_*.py")), "the contract's tests"


def test_test_files_have_one_name_across_rooms_and_suites():
    """No __init__.py in test folders: pytest imports each test file by its basename."""
    names = [p.name for p in [*ROOT.glob("tests/**/test_*.py"), *SERVICES_DIR.glob("*/tests/test_*.py")]]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)
    assert {p.name for p in (ROOT / "tests").iterdir() if p.is_dir() and p.name != "__pycache__"} <= CROSS_SERVICE


def test_the_group_members_keep_only_what_they_do_with_a_batch():
    """The Kafka plumbing lives in vidpipe.member; a worker past this size is growing a second copy of it."""
    for worker in ("consumer-service/consumer_service/worker.py", "analytics-service/analytics_service/worker.py"):
        lines = len((SERVICES_DIR / worker).read_text().splitlines())
        assert lines <= 250, f"{worker}: {lines} lines"
