"""A real single-node Apache Kafka broker (KRaft, broker+controller) run locally from Maven Central jars.

No Docker and no mock: `fetch()` copies the pinned broker jars (tools/kafka/pom.xml) with Maven, `start()`
writes server.properties, formats the storage once (standalone controller quorum) and launches
`java -cp '<libs>/*' kafka.Kafka server.properties` in the background. A restart reuses the same data dir,
so topics and messages survive it.

Library use (e.g. from a pytest session fixture)::

    from tools.kafka.broker import LocalBroker
    with LocalBroker(tmp_dir, port=0, controller_port=0) as broker:   # 0 = a free port, kept across restarts
        broker.bootstrap                                            # "127.0.0.1:<port>"
        broker.restart()                                            # same data, same ports

CLI (from the repo root)::

    python -m tools.kafka.broker fetch|start|stop|status|wait|restart [--data-dir D] [--port P] [--controller-port C]
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import ctypes
import fcntl
import hashlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil

from tools.harness.processes import free_port

ROOT = Path(__file__).resolve().parents[2]
POM = Path(__file__).resolve().with_name("pom.xml")
DEFAULT_LIBS_DIR = ROOT / ".cache" / "kafka" / "libs"
DEFAULT_DATA_DIR = ROOT / ".cache" / "kafka" / "data"
DEFAULT_PORT = 9092
DEFAULT_CONTROLLER_PORT = 9093
NODE_ID = 1
STAMP_NAME = ".fetched"

log = logging.getLogger("local_kafka")

LOG4J2_PROPERTIES = """\
# Written by tools/kafka/broker.py: everything to stdout, which the launcher sends to broker.log.
status = warn
name = local-kafka
appender.stdout.type = Console
appender.stdout.name = STDOUT
appender.stdout.layout.type = PatternLayout
appender.stdout.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = STDOUT
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.authorizer.name = kafka.authorizer.logger
logger.authorizer.level = WARN
"""

JVM_OPTS = [
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35",
    "-XX:+ExplicitGCInvokesConcurrent",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.awt.headless=true",
]


class BrokerError(RuntimeError):
    """The broker could not be fetched, started or reached; the message says why (with the log tail)."""


def port_open(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def random_cluster_id() -> str:
    """Like Kafka's Uuid.randomUuid().toString(): 22 URL-safe base64 chars, never starting with '-'."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


def _pid_alive(pid: int) -> bool:
    """Running (a zombie, exited but not yet reaped, is not)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True


def _cmdline(pid: int) -> str:
    try:
        return " ".join(psutil.Process(pid).cmdline())
    except psutil.Error:
        return ""


def _set_pdeathsig() -> None:  # runs in the child between fork and exec
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _mvn_executable() -> str:
    mvn = shutil.which("mvn")
    if not mvn:
        raise BrokerError(
            "Maven (`mvn`) is not on PATH: it is needed once to fetch the Kafka broker jars from Maven Central "
            "(tools/kafka/pom.xml). Install it (Debian: `apt-get install -y maven`, with a JDK 17+) or put "
            "already fetched jars in the libs dir."
        )
    return mvn


def _java_executable() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").exists():
        return str(Path(java_home) / "bin" / "java")
    java = shutil.which("java")
    if not java:
        raise BrokerError(
            "`java` is not on PATH (and JAVA_HOME is unset): Kafka 4.x needs a Java 17+ runtime "
            "(Debian: `apt-get install -y openjdk-17-jre-headless`)."
        )
    return java


def fetch_libs(libs_dir: Path | str = DEFAULT_LIBS_DIR, pom: Path = POM, quiet: bool = True) -> Path:
    """Copy the pinned broker jars into libs_dir with Maven; a fast no-op when the stamp matches the pom."""
    libs_dir = Path(libs_dir).resolve()
    libs_dir.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256(pom.read_bytes()).hexdigest()
    stamp = libs_dir / STAMP_NAME

    def done() -> bool:
        return stamp.exists() and stamp.read_text().strip() == digest and any(libs_dir.glob("kafka_2.13-*.jar"))

    if done():
        return libs_dir
    with open(libs_dir.parent / f".{libs_dir.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one fetch at a time (parallel test workers, make -j)
        if done():
            return libs_dir
        mvn = _mvn_executable()
        staging = libs_dir / f".staging-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        cmd = [
            mvn,
            "-B",
            "-Dstyle.color=never",
            "-f",
            str(pom),
            "dependency:copy-dependencies",
            f"-Dkafka.libs.dir={staging}",
        ]
        if quiet:
            cmd.insert(1, "-q")
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                raise BrokerError(
                    f"`{' '.join(cmd)}` failed (exit {proc.returncode}):\n{(proc.stdout + proc.stderr)[-4000:]}"
                )
            wanted = {jar.name for jar in staging.glob("*.jar")}
            if not any(name.startswith("kafka_2.13-") for name in wanted):
                raise BrokerError(f"Maven finished but fetched no kafka_2.13 jar ({cmd})")
            # Jar names carry their versions: keep the ones already there (a running broker may hold them open),
            # add the new ones, drop the others so two Kafka versions never share the classpath.
            stamp.unlink(missing_ok=True)
            for jar in staging.glob("*.jar"):
                if not (libs_dir / jar.name).exists():
                    os.replace(jar, libs_dir / jar.name)
            for old in libs_dir.glob("*.jar"):
                if old.name not in wanted:
                    old.unlink()
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        stamp.write_text(digest + "\n")
    return libs_dir


def kafka_version(libs_dir: Path | str = DEFAULT_LIBS_DIR) -> str | None:
    jars = sorted(Path(libs_dir).glob("kafka_2.13-*.jar"))
    return jars[0].name[len("kafka_2.13-") : -len(".jar")] if jars else None


class LocalBroker:
    """One local KRaft node (process.roles=broker,controller) with its state in data_dir.

    port / controller_port: an explicit number; 0 = a free port; None = the default (9092 / 9093).
    Once data_dir has been started, its ports are saved in data_dir/broker.json and reused when the
    argument is 0 or None, so a restart (or a new LocalBroker on the same dir) keeps the same bootstrap.
    """

    def __init__(
        self,
        data_dir: Path | str = DEFAULT_DATA_DIR,
        port: int | None = None,
        controller_port: int | None = None,
        libs_dir: Path | str = DEFAULT_LIBS_DIR,
        heap: str = "512m",
        config_overrides: dict[str, object] | None = None,
        die_with_parent: bool = False,
    ):
        self.data_dir = Path(data_dir).resolve()
        self.libs_dir = Path(libs_dir).resolve()
        self.heap = heap
        self.config_overrides = dict(config_overrides or {})
        self.die_with_parent = die_with_parent
        saved = self._load_state()
        self.cluster_id: str = saved.get("cluster_id") or random_cluster_id()
        self.port = self._pick_port(port, saved.get("port"), DEFAULT_PORT)
        self.controller_port = self._pick_port(controller_port, saved.get("controller_port"), DEFAULT_CONTROLLER_PORT)
        if saved.get("controller_port") and self.controller_port != saved["controller_port"] and self.formatted:
            raise BrokerError(
                f"{self.data_dir} was formatted with controller port {saved['controller_port']} (its standalone "
                f"quorum records that endpoint); start it on that port or use a fresh data dir."
            )
        if self.port == self.controller_port:
            raise BrokerError(f"port and controller_port are both {self.port}")
        self._proc: subprocess.Popen | None = None
        self.last_start_seconds: float | None = None  # launch -> ready, excluding the format step
        self.last_format_seconds: float | None = None

    # ----- paths and state
    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def properties_path(self) -> Path:
        return self.data_dir / "server.properties"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "broker.log"

    @property
    def pid_path(self) -> Path:
        return self.data_dir / "broker.pid"

    @property
    def kraft_dir(self) -> Path:
        return self.data_dir / "kraft-logs"

    @property
    def formatted(self) -> bool:
        return (self.kraft_dir / "meta.properties").exists()

    @property
    def state_path(self) -> Path:
        return self.data_dir / "broker.json"

    def _load_state(self) -> dict:
        try:
            return json.loads((self.data_dir / "broker.json").read_text())
        except (OSError, ValueError):
            return {}

    @staticmethod
    def _pick_port(asked: int | None, saved: int | None, default: int) -> int:
        if asked:
            return int(asked)
        if saved:
            return int(saved)
        return free_port() if asked == 0 else default

    def _save_state(self) -> None:
        self.state_path.write_text(
            json.dumps(
                {"cluster_id": self.cluster_id, "port": self.port, "controller_port": self.controller_port}, indent=2
            )
            + "\n"
        )

    @property
    def pid(self) -> int | None:
        """The running broker's pid (checked against /proc), else None."""
        try:
            pid = int(self.pid_path.read_text().strip())
        except (OSError, ValueError):
            return None
        if _pid_alive(pid) and "kafka.Kafka" in _cmdline(pid) and str(self.properties_path) in _cmdline(pid):
            return pid
        return None

    def is_running(self) -> bool:
        return self.pid is not None

    def config(self) -> dict[str, object]:
        cfg: dict[str, object] = {
            "process.roles": "broker,controller",
            "node.id": NODE_ID,
            "controller.quorum.bootstrap.servers": f"127.0.0.1:{self.controller_port}",
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            "inter.broker.listener.name": "PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.kraft_dir),
            "num.partitions": 6,
            "default.replication.factor": 1,
            "min.insync.replicas": 1,
            "auto.create.topics.enable": "false",
            "offsets.topic.replication.factor": 1,
            "transaction.state.log.replication.factor": 1,
            "transaction.state.log.min.isr": 1,
            "share.coordinator.state.topic.replication.factor": 1,
            "share.coordinator.state.topic.min.isr": 1,
            "group.initial.rebalance.delay.ms": 0,
            "message.max.bytes": 8388608,
            "replica.fetch.max.bytes": 8388608,
            "num.recovery.threads.per.data.dir": 1,
        }
        cfg.update(self.config_overrides)
        return cfg

    def _write_config(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        lines = ["# Written by tools/kafka/broker.py on every start; edit LocalBroker.config() instead."]
        lines += [f"{k}={v}" for k, v in self.config().items()]
        self.properties_path.write_text("\n".join(lines) + "\n")
        (self.data_dir / "log4j2.properties").write_text(LOG4J2_PROPERTIES)
        self._save_state()

    def _java_cmd(self, main: str, *args: str) -> list[str]:
        return [
            _java_executable(),
            f"-Xmx{self.heap}",
            "-Xms128m",
            *JVM_OPTS,
            f"-Dlog4j2.configurationFile={self.data_dir / 'log4j2.properties'}",
            "-cp",
            str(self.libs_dir / "*"),
            main,
            *args,
        ]

    # ----- lifecycle
    def fetch(self) -> LocalBroker:
        fetch_libs(self.libs_dir)
        return self

    def format(self) -> bool:
        """Format the storage with a standalone controller quorum, only if not formatted yet."""
        if self.formatted:
            return False
        t0 = time.monotonic()
        cmd = self._java_cmd(
            "kafka.tools.StorageTool", "format", "--standalone", "-t", self.cluster_id, "-c", str(self.properties_path)
        )
        proc = subprocess.run(cmd, capture_output=True, text=True)
        (self.data_dir / "format.log").write_text(proc.stdout + proc.stderr)
        if proc.returncode != 0 or not self.formatted:
            raise BrokerError(
                f"formatting {self.kraft_dir} failed (exit {proc.returncode}):\n{(proc.stdout + proc.stderr)[-4000:]}"
            )
        self.last_format_seconds = time.monotonic() - t0
        return True

    def start(self, wait: bool = True, timeout: float = 90.0) -> LocalBroker:
        """Launch the broker in the background (no-op when already running); by default wait until ready."""
        if self.is_running():
            if wait:
                self.wait(timeout)
            return self
        try:
            self.fetch()  # a fast stamp check when the jars match tools/kafka/pom.xml
        except BrokerError:
            if not any(self.libs_dir.glob("kafka_2.13-*.jar")):
                raise
            log.warning("could not refresh %s (using the jars already there)", self.libs_dir, exc_info=True)
        for p, what in ((self.port, "port"), (self.controller_port, "controller port")):
            if port_open(p):
                raise BrokerError(
                    f"{what} 127.0.0.1:{p} is already in use by another process "
                    f"(not the broker of {self.data_dir}); pick another port"
                )
        self._write_config()
        self.format()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "ab") as out:
            out.write(f"===== tools/kafka/broker.py: starting {time.strftime('%Y-%m-%d %H:%M:%S')} =====\n".encode())
            out.flush()
            self._t_launch = time.monotonic()
            self._proc = subprocess.Popen(
                self._java_cmd("kafka.Kafka", str(self.properties_path)),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,
                start_new_session=True,
                preexec_fn=_set_pdeathsig if self.die_with_parent else None,
            )
        self.pid_path.write_text(f"{self._proc.pid}\n")
        if wait:
            try:
                self.wait(timeout)
            except BaseException:  # not ready in time (or interrupted): leave no half-started broker behind
                self.kill()
                raise
        return self

    def log_tail(self, lines: int = 60, since_start: bool = True) -> str:
        try:
            data = self.log_path.read_bytes()
        except OSError:
            return "(no broker.log)"
        if since_start and getattr(self, "_log_offset", 0) <= len(data):
            data = data[getattr(self, "_log_offset", 0) :]
        return "\n".join(data.decode(errors="replace").splitlines()[-lines:])

    def _process_gone(self) -> bool:
        if self._proc is not None:
            return self._proc.poll() is not None
        return self.pid is None

    def ready(self, timeout: float = 2.0) -> bool:
        """True when an AdminClient lists topics and sees this node as a broker."""
        if not port_open(self.port):
            return False
        from confluent_kafka.admin import AdminClient

        admin = AdminClient(
            {
                "bootstrap.servers": self.bootstrap,
                "socket.timeout.ms": int(timeout * 1000),
                "logger": logging.getLogger("local_kafka.admin"),
            }
        )
        try:
            md = admin.list_topics(timeout=timeout)
        except Exception:  # KafkaException while the broker is still coming up
            return False
        return NODE_ID in md.brokers

    def wait(self, timeout: float = 90.0) -> float:
        """Block until ready(); return seconds since launch. Raise BrokerError (with the log tail) if the
        process died or the timeout passed."""
        t0 = time.monotonic()
        while True:
            if self._process_gone():
                if self._proc is None and not self.pid_path.exists():
                    raise BrokerError(
                        f"no Kafka broker is running for {self.data_dir} (never started, or "
                        f"stopped): run `python -m tools.kafka.broker start` first"
                    )
                code = self._proc.returncode if self._proc is not None else "unknown"
                raise BrokerError(
                    f"the Kafka broker of {self.data_dir} died (exit code {code}); "
                    f"last lines of {self.log_path}:\n{self.log_tail()}"
                )
            if self.ready():
                launched = getattr(self, "_t_launch", None)
                elapsed = time.monotonic() - (launched if launched is not None else t0)
                if launched is not None:
                    self.last_start_seconds = elapsed
                    self._t_launch = None
                return elapsed
            if time.monotonic() - t0 > timeout:
                raise BrokerError(
                    f"the Kafka broker at {self.bootstrap} was not ready after {timeout:.0f} s; "
                    f"last lines of {self.log_path}:\n{self.log_tail()}"
                )
            time.sleep(0.25)

    def _signal_and_wait(self, pid: int, sig: int, timeout: float) -> bool:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.pid == pid:
                if self._proc.poll() is not None:
                    return True
            elif not _pid_alive(pid):
                return True
            time.sleep(0.1)
        return False

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM (controlled shutdown), wait up to timeout, then SIGKILL. No-op when not running."""
        pid = self.pid
        if pid is not None and not self._signal_and_wait(pid, signal.SIGTERM, timeout):
            log.warning("broker pid %s ignored SIGTERM for %.0f s: killing it", pid, timeout)
            self._signal_and_wait(pid, signal.SIGKILL, 10)
        self._reap()

    def kill(self) -> None:
        """SIGKILL at once (a crash, for fault tests); data written so far stays in data_dir."""
        pid = self.pid
        if pid is not None:
            self._signal_and_wait(pid, signal.SIGKILL, 10)
        self._reap()

    def _reap(self) -> None:
        if self._proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=5)
            self._proc = None
        self.pid_path.unlink(missing_ok=True)

    def restart(self, timeout: float = 90.0, graceful: bool = True) -> LocalBroker:
        """Stop (SIGTERM, or SIGKILL when graceful=False) and start again on the same data dir and ports."""
        self.stop() if graceful else self.kill()
        # the old process has released its listeners; make sure the kernel agrees before re-binding
        deadline = time.monotonic() + 10
        while (port_open(self.port) or port_open(self.controller_port)) and time.monotonic() < deadline:
            time.sleep(0.1)
        return self.start(wait=True, timeout=timeout)

    def __enter__(self) -> LocalBroker:
        return self.start(wait=True)

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"LocalBroker(bootstrap={self.bootstrap!r}, data_dir={str(self.data_dir)!r}, pid={self.pid})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.kafka.broker", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["fetch", "start", "stop", "status", "wait", "restart"])
    parser.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR))
    parser.add_argument("--libs-dir", default=str(DEFAULT_LIBS_DIR))
    parser.add_argument(
        "--port",
        type=int,
        default=None,
        help=f"PLAINTEXT port (default: the data dir's saved port, else {DEFAULT_PORT}; 0 = free)",
    )
    parser.add_argument(
        "--controller-port",
        type=int,
        default=None,
        help=f"CONTROLLER port (default: saved, else {DEFAULT_CONTROLLER_PORT}; 0 = free)",
    )
    parser.add_argument("--heap", default="512m")
    parser.add_argument("--timeout", type=float, default=90.0, help="seconds for start/wait/restart")
    parser.add_argument("--no-wait", action="store_true", help="start: return once launched")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    try:
        if args.command == "fetch":
            t0 = time.monotonic()
            libs = fetch_libs(args.libs_dir)
            print(f"Kafka {kafka_version(libs)} jars in {libs} ({time.monotonic() - t0:.1f} s)")
            return 0
        broker = LocalBroker(
            args.data_dir, port=args.port, controller_port=args.controller_port, libs_dir=args.libs_dir, heap=args.heap
        )
        if args.command == "start":
            if broker.is_running():
                print(f"already running: pid {broker.pid}, bootstrap {broker.bootstrap}")
                if not args.no_wait:
                    broker.wait(args.timeout)
                return 0
            broker.start(wait=not args.no_wait, timeout=args.timeout)
            fmt = f", formatted storage in {broker.last_format_seconds:.1f} s" if broker.last_format_seconds else ""
            ready = "" if args.no_wait else f", ready {broker.last_start_seconds:.1f} s after launch"
            print(
                f"Kafka {kafka_version(broker.libs_dir)} started: pid {broker.pid}, bootstrap "
                f"{broker.bootstrap}{fmt}{ready}; log {broker.log_path}"
            )
        elif args.command == "wait":
            elapsed = broker.wait(args.timeout)
            print(f"ready: bootstrap {broker.bootstrap} (waited {elapsed:.1f} s)")
        elif args.command == "stop":
            pid = broker.pid
            t0 = time.monotonic()
            broker.stop()
            print(f"stopped pid {pid} in {time.monotonic() - t0:.1f} s" if pid else "not running")
        elif args.command == "restart":
            broker.restart(timeout=args.timeout)
            print(
                f"restarted: pid {broker.pid}, bootstrap {broker.bootstrap}, "
                f"ready {broker.last_start_seconds:.1f} s after launch"
            )
        elif args.command == "status":
            pid = broker.pid
            if pid is None:
                print(f"stopped (data dir {broker.data_dir})")
                return 1
            print(f"running: pid {pid}, bootstrap {broker.bootstrap}, ready {'yes' if broker.ready() else 'no'}")
        return 0
    except BrokerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
