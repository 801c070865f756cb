"""The pipeline's services as real local processes, each logging to a file and stopped with SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from tools.paths import DEFAULT_MODEL, ROOT, SAMPLE_VIDEO


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (the system's pick), for a service or broker started next."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def service_env(**variables: str) -> dict[str, str]:
    """The current environment plus the given variables (the services are installed packages)."""
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env.update({k: str(v) for k, v in variables.items()})
    return env


@dataclass
class ServiceProcess:
    """A service started as `python -m module` (or as `command`, another program such as Prometheus), logging
    to a file, stopped with SIGTERM."""

    name: str
    module: str
    env: dict[str, str]
    log_path: Path
    args: list[str] = field(default_factory=list)
    process: subprocess.Popen | None = None
    ready_url: str | None = None  # its readiness probe (the ops port's /readyz, the consumer's health port)
    command: list[str] | None = None  # instead of `python -m module args`

    def start(self) -> ServiceProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            self.command or [sys.executable, "-m", self.module, *self.args],
            env=self.env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        return self

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def wait_http(self, url: str, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.running:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"{self.name} not ready at {url} after {timeout_s:.0f}s:\n{self.log_tail()}")

    def wait_ready(self, timeout_s: float = 120.0) -> None:
        if self.ready_url is None:
            raise ValueError(f"{self.name} has no readiness URL")
        self.wait_http(self.ready_url, timeout_s)

    def signal(self, signum: int) -> None:
        if self.running:
            self.process.send_signal(signum)

    def stop(self, timeout_s: float = 30.0) -> int | None:
        if self.process is None:
            return None
        if self.running:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def inference_process(port: int, log_dir: Path, model: Path = DEFAULT_MODEL, **extra: str) -> ServiceProcess:
    """The inference service: its API on http://127.0.0.1:<port>, probes and metrics on its ops port
    (INFERENCE_OPS_PORT, a free one unless given: ops_url)."""
    # The calibration clip the image ships (its start-up accuracy gate's) is the sample video here.
    variables = {"INFERENCE_OPS_PORT": str(free_port()), "INFERENCE_GATE_CLIP": str(SAMPLE_VIDEO), **extra}
    env = service_env(INFERENCE_MODEL_URI=str(model), INFERENCE_PORT=str(port), INFERENCE_HOST="127.0.0.1", **variables)
    process = ServiceProcess("inference", "inference_service", env, log_dir / "inference.log")
    process.ready_url = ops_url(process, "/readyz")
    return process


def consumer_process(
    bootstrap: str, inference_url: str, archive_uri: str, log_dir: Path, name: str = "consumer", **extra: str
) -> ServiceProcess:
    env = service_env(
        KAFKA_BOOTSTRAP=bootstrap,
        CONSUMER_INFERENCE_URL=inference_url,
        CONSUMER_ARCHIVE_URI=archive_uri,
        CONSUMER_HEALTH_PORT=str(free_port()),
        **extra,
    )
    return ServiceProcess(name, "consumer_service", env, log_dir / f"{name}.log")


def publisher_process(
    bootstrap: str, source: Path | str, log_dir: Path, args: list[str], **extra: str
) -> ServiceProcess:
    env = service_env(KAFKA_BOOTSTRAP=bootstrap, **extra)
    return ServiceProcess(
        "publisher", "frame_publisher", env, log_dir / "publisher.log", ["--source", str(source), *args]
    )


def publisher_group_process(bootstrap: str, log_dir: Path, name: str = "publisher", **extra: str) -> ServiceProcess:
    """A publisher in registry mode: a member of the publisher group carrying its share of the registry's
    streams, named `name` in their statuses; /readyz (its partitions and streams) and /metrics on
    PUBLISHER_HEALTH_PORT (a free one unless given: publisher_url)."""
    variables = {"PUBLISHER_HEALTH_PORT": str(free_port()), "PUBLISHER_POD_NAME": name, **extra}
    env = service_env(KAFKA_BOOTSTRAP=bootstrap, PUBLISHER_MODE="registry", **variables)
    for variable in ("PUBLISHER_SOURCE", "PUBLISHER_SOURCE_FILE", "PUBLISHER_SOURCE_SECRET_ARN", "PUBLISHER_STREAM_ID"):
        if variable not in extra:
            env.pop(variable, None)  # the registry defines the streams, not the caller's environment
    process = ServiceProcess(name, "frame_publisher", env, log_dir / f"{name}.log")
    process.ready_url = publisher_url(process, "/readyz")
    return process


def publisher_url(process: ServiceProcess, path: str = "/metrics") -> str:
    """A publisher's health port: /healthz, /readyz, /metrics."""
    return f"http://127.0.0.1:{process.env['PUBLISHER_HEALTH_PORT']}{path}"


def analytics_process(
    bootstrap: str,
    logs: Path,
    streams_file: Path | None,
    archive_uri: str | None,
    port: int,
    name: str = "analytics",
    **extra: str,
) -> ServiceProcess:
    """The analytics service: results -> events, the live view on http://127.0.0.1:<port>/, probes and
    metrics on its ops port (ANALYTICS_OPS_PORT, a free one unless given: ops_url)."""
    variables = {"ANALYTICS_OPS_PORT": str(free_port()), **extra}
    env = service_env(KAFKA_BOOTSTRAP=bootstrap, ANALYTICS_PORT=str(port), ANALYTICS_HOST="127.0.0.1", **variables)
    # None means none: not one inherited from the caller's environment.
    for variable, value in (("ANALYTICS_STREAMS_FILE", streams_file), ("ANALYTICS_ARCHIVE_URI", archive_uri)):
        env.pop(variable, None)
        if value is not None:
            env[variable] = str(value)
    process = ServiceProcess(name, "analytics_service", env, logs / f"{name}.log")
    process.ready_url = ops_url(process, "/readyz")
    return process


def analytics_url(process: ServiceProcess, path: str = "/") -> str:
    return f"http://127.0.0.1:{process.env['ANALYTICS_PORT']}{path}"


def ops_url(process: ServiceProcess, path: str = "/metrics") -> str:
    """The ops port of the inference or analytics service: /healthz, /readyz, /metrics."""
    variable = "INFERENCE_OPS_PORT" if process.module == "inference_service" else "ANALYTICS_OPS_PORT"
    return f"http://127.0.0.1:{process.env[variable]}{path}"


def consumer_health_url(process: ServiceProcess) -> str:
    return f"http://127.0.0.1:{process.env['CONSUMER_HEALTH_PORT']}/readyz"
