"""A real Prometheus for the local pipeline: scrapes every service's /metrics and evaluates the committed
alert rules, as Amazon Managed Service for Prometheus does deployed.

    with LocalPrometheus(out / "prometheus", {"consumer": ["127.0.0.1:8081"], ...}) as prometheus:
        print(prometheus.url)          # http://127.0.0.1:<port>: /graph, /alerts, /targets
        prometheus.query("consumer_lag")

It writes prometheus.yml (static targets, each labelled with its service) into its folder, keeps its
TSDB there, and listens on a free port of 127.0.0.1. The binary is Debian's (`make prometheus-deps`).
"""

from __future__ import annotations

import json
import shutil
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import yaml

from tools.harness.processes import ServiceProcess, free_port, service_env
from tools.paths import ROOT

ALERT_RULES = ROOT / "services" / "deploy" / "vidpipe_deploy" / "monitoring" / "alerts.yaml"
NOT_INSTALLED = "prometheus not installed: run `make prometheus-deps`"


class PrometheusUnavailable(RuntimeError):
    """Prometheus is not installed, or did not start (the message says which, and where its log is)."""


def prometheus_binary() -> str | None:
    return shutil.which("prometheus") or ("/usr/bin/prometheus" if Path("/usr/bin/prometheus").exists() else None)


def write_config(
    folder: Path,
    targets: Mapping[str, Sequence[str]],
    rule_files: Sequence[Path] = (ALERT_RULES,),
    interval_s: float = 2.0,
) -> Path:
    """prometheus.yml: one job per service (its `service` label), scraped and evaluated every interval_s
    (seconds locally, where a deployment takes 30 s or more: a demo is over in minutes)."""
    interval = f"{interval_s:g}s"
    config = {
        "global": {"scrape_interval": interval, "scrape_timeout": interval, "evaluation_interval": interval},
        "rule_files": [str(Path(path).resolve()) for path in rule_files],
        "scrape_configs": [
            {
                "job_name": service,
                "static_configs": [{"targets": list(addresses), "labels": {"service": service}}],
            }
            for service, addresses in targets.items()
        ],
    }
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "prometheus.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


class LocalPrometheus:
    def __init__(
        self,
        folder: Path,
        targets: Mapping[str, Sequence[str]],
        rule_files: Sequence[Path] = (ALERT_RULES,),
        interval_s: float = 2.0,
        binary: str | None = None,
    ):
        self.folder = folder
        self.targets = targets
        self.rule_files = rule_files
        self.interval_s = interval_s
        self.binary = binary or prometheus_binary()
        self.port = 0
        self.server: ServiceProcess | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.folder / "prometheus.log"

    def start(self, timeout_s: float = 60.0) -> LocalPrometheus:
        if self.binary is None:
            raise PrometheusUnavailable(NOT_INSTALLED)
        shutil.rmtree(self.folder / "data", ignore_errors=True)  # each run's series from zero
        config = write_config(self.folder, self.targets, self.rule_files, self.interval_s)
        self.port = free_port()
        self.server = ServiceProcess(
            "prometheus",
            "",
            service_env(),
            self.log_path,
            ready_url=f"{self.url}/-/ready",
            command=[
                self.binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={self.folder / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
        ).start()
        try:
            self.server.wait_ready(timeout_s)
        except (RuntimeError, TimeoutError) as exc:
            self.stop()
            raise PrometheusUnavailable(str(exc)) from None
        return self

    def log_tail(self, lines: int = 20) -> str:
        return self.server.log_tail(lines) if self.server else ""

    def stop(self, timeout_s: float = 15.0) -> None:
        if self.server is not None:
            self.server.stop(timeout_s)

    def __enter__(self) -> LocalPrometheus:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    # --- the HTTP API ---------------------------------------------------------------------------

    def api(self, path: str, **params: str) -> Any:
        """The `data` of /api/v1/<path>; a failed request or an error status raises."""
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}{query}", timeout=10) as response:
            body = json.load(response)
        if body.get("status") != "success":
            raise RuntimeError(f"{path} {params}: {body}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's result (a vector's series; a scalar as one entry)."""
        data = self.api("query", query=expr)
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": data["result"]}]
        return list(data["result"])

    def rules(self) -> list[dict[str, Any]]:
        """Every rule of every group, each with its group's name under 'group'."""
        return [{**rule, "group": group["name"]} for group in self.api("rules")["groups"] for rule in group["rules"]]

    def alerts(self) -> list[dict[str, Any]]:
        return list(self.api("alerts")["alerts"])

    def targets_health(self) -> dict[str, str]:
        """Each active target's scrape URL and its health (up, down, unknown)."""
        return {t["scrapeUrl"]: t["health"] for t in self.api("targets")["activeTargets"]}


def start_beside(stack: ExitStack, folder: Path, targets: Mapping[str, Sequence[str]]) -> LocalPrometheus | None:
    """Prometheus for a run that can do without it (make demo): started and stopped with the stack, or
    None after saying why it did not start."""
    try:
        prometheus = LocalPrometheus(folder, targets).start()
    except (PrometheusUnavailable, OSError) as exc:
        print(f"prometheus: not started, going on without it ({exc})")
        return None
    stack.callback(prometheus.stop)
    return prometheus
