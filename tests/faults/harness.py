"""A fault case: real broker, real service processes, frames with known sequence numbers, and an
account at the end of which frames have a result and how many results are duplicates."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from tests.fixtures.pipeline import topic_env
from tools.harness.faults_report import REPORT_DIR
from tools.harness.processes import ServiceProcess, consumer_health_url, consumer_process, publisher_process
from tools.harness.results import ResultCollector
from vidpipe.kafka import KafkaSettings


@dataclass
class Account:
    published: int
    with_results: int
    duplicates: int
    missing: list[int]
    context: str = ""  # when frames are missing: each process's state and log tail, for the assertion message

    def as_row(self, case: str, behaviour: str) -> dict:
        return {
            "fault": case,
            "behaviour": behaviour,
            "frames_published": self.published,
            "frames_with_results": self.with_results,
            "duplicates": self.duplicates,
        }


@dataclass
class FaultRun:
    bootstrap: str
    topics: object
    inference_url: str
    workdir: Path
    group: str = field(default_factory=lambda: f"faults-{uuid.uuid4().hex[:6]}")
    processes: list[ServiceProcess] = field(default_factory=list)

    def __post_init__(self):
        self.settings = KafkaSettings(bootstrap=self.bootstrap)
        self.results = ResultCollector(self.bootstrap, self.topics.results)

    @property
    def seen(self) -> Counter:
        """How often each seq's result arrived (every stream here is "fault")."""
        return Counter({seq: n for (_, seq), n in self.results.arrivals.items()})

    def consumer(self, name: str = "consumer", inference_url: str | None = None, **extra: str) -> ServiceProcess:
        env = {"CONSUMER_GROUP_ID": self.group, **topic_env(self.topics), **extra}
        process = consumer_process(
            self.bootstrap,
            inference_url or self.inference_url,
            str(self.workdir / "archive"),
            self.workdir,
            name=name,
            **env,
        ).start()
        self.processes.append(process)
        process.wait_http(consumer_health_url(process), timeout_s=60)
        return process

    def publisher(self, source, *args: str, **extra: str) -> ServiceProcess:
        summary = self.workdir / "publisher.json"
        process = publisher_process(
            self.bootstrap,
            source,
            self.workdir,
            ["--stream-id", "fault", "--summary-file", str(summary), *args],
            **topic_env(self.topics),
            **extra,
        ).start()
        self.processes.append(process)
        return process

    def publisher_summary(self) -> dict:
        return json.loads((self.workdir / "publisher.json").read_text())

    def poll_results(self, seconds: float) -> None:
        self.results.poll(seconds)

    def wait_results(self, at_least: int, timeout_s: float) -> int:
        deadline = time.monotonic() + timeout_s
        while len(self.results.results) < at_least and time.monotonic() < deadline:
            self.poll_results(0.5)
        return len(self.results.results)

    def account(self, published_seqs: range, timeout_s: float = 180, settle_s: float = 3.0) -> Account:
        self.wait_results(len(published_seqs), timeout_s)
        self.poll_results(settle_s)  # late duplicates count too
        missing = [s for s in published_seqs if s not in self.seen]
        duplicates = sum(n - 1 for s, n in self.seen.items() if s in published_seqs)
        context = self.process_report() if missing else ""
        return Account(len(published_seqs), len(published_seqs) - len(missing), duplicates, missing, context)

    def process_report(self, lines: int = 40) -> str:
        """Which processes still run and how each one's log ends: a failure on a CI machine is
        explained by its own message, the temp dir being gone by the time anyone looks."""
        parts = []
        for process in self.processes:
            state = (
                "running" if process.running else f"exited {process.process.returncode if process.process else None}"
            )
            parts.append(f"--- {process.name} ({state}), last {lines} lines:\n{process.log_tail(lines)}")
        return f"{len(self.results.results)} results read\n" + "\n".join(parts)

    def close(self) -> None:
        for process in self.processes:
            process.stop(timeout_s=15)
        self.results.close()


def record_row(case: str, behaviour: str, account: Account, **extra: int) -> None:
    """Each case leaves its figures in out/faults/; `python -m tools.harness.faults_report` makes the
    Reliability table (docs/RELIABILITY.md) from them."""
    REPORT_DIR.mkdir(parents=True, exist_ok=True)
    row = {**account.as_row(case, behaviour), **extra}
    name = re.sub(r"[^A-Za-z0-9.-]+", "_", case)
    (REPORT_DIR / f"{name}.json").write_text(json.dumps(row, indent=2))


# --- the consumer's own view: /healthz, /metrics, and the archive it wrote --------------------------------


def consumer_healthz(process: ServiceProcess) -> tuple[int, dict]:
    """(status, body) of the consumer's /healthz (503 with a reason when it declares itself unhealthy)."""
    import urllib.error
    import urllib.request

    url = f"http://127.0.0.1:{process.env['CONSUMER_HEALTH_PORT']}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def wait_consumer_health(process: ServiceProcess, status: int, timeout_s: float) -> dict:
    """Poll /healthz until it answers `status`; its body then (AssertionError with the log otherwise)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        answer, body = consumer_healthz(process)
        if answer == status:
            return body
        time.sleep(0.5)
    raise AssertionError(f"/healthz still {answer} {body} after {timeout_s}s:\n{process.log_tail(30)}")


def consumer_metric(process: ServiceProcess, name: str, **labels: str) -> float:
    """A sample of the consumer's /metrics (the sum over label values not given)."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    url = f"http://127.0.0.1:{process.env['CONSUMER_HEALTH_PORT']}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


def archive_state(root: Path) -> dict[str, tuple[int, int]]:
    """Every object of a local archive: key -> (mtime in ns, inode). A rewrite changes both, even with the
    same bytes (writes go to a temp file, then a link or rename)."""
    return {
        path.relative_to(root).as_posix(): (path.stat().st_mtime_ns, path.stat().st_ino)
        for path in sorted(root.rglob("*"))
        if path.is_file() and not path.name.startswith(".tmp-")
    }
