"""Serving from several processes (INFERENCE_PROCESSES): one Python process runs its HTTP, batching and
answers under one interpreter lock, so a pod with several CPUs serves from several processes.

With more than one, `python -m inference_service` is a supervisor. It binds the API port once and starts
that many workers (`python -m inference_service` again, told which worker it is through VIDPIPE_WORKER_*
variables), each serving the API app on the inherited listening socket: the kernel's one accept queue
hands a new connection to whichever worker accepts first, an idle one sooner than a busy one, and workers
close connections after CONNECTION_MAX_AGE_S so that long-lived ones spread again. Each worker runs on its
own CPUs and sizes its model instances and threads from its share of the pod's (serving_share). The supervisor
serves the ops port itself: /metrics over all the workers (prometheus_client's multiprocess mode, in a
private directory under $TMPDIR), /readyz once every worker has its model loaded, /healthz 503 once a
worker failed to load its model or died before loading it (Kubernetes then restarts the pod, with its
back-off, as for one process whose model fails to load). A worker that dies after it had served is
started again at once: the other workers and their in-flight requests carry on, which restarting the
whole pod would throw away. SIGTERM drains every worker (each finishes its in-flight requests, as one
process does) and exits 0.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from vidpipe.http_edge import EdgeServer, error_document, json_probe, ops_app, ops_config
from vidpipe.logs import TEXT_FORMAT, JsonFormatter, json_lines

from .cpu import cpu_limit
from .settings import InferenceSettings

log = logging.getLogger(__name__)

# Set by the supervisor for each worker; not settings (nobody else sets them).
WORKER = "VIDPIPE_WORKER"  # the worker's number, 1..processes
WORKER_CPUS = "VIDPIPE_WORKER_CPUS"  # its share of the pod's CPUs
WORKER_PROCESSES = "VIDPIPE_WORKER_PROCESSES"
WORKER_CPU_SET = "VIDPIPE_WORKER_CPU_SET"  # the CPUs it runs on, comma-separated
LISTEN_FD = "VIDPIPE_WORKER_LISTEN_FD"  # the API's listening socket
STATUS_FD = "VIDPIPE_WORKER_STATUS_FD"  # its line to the supervisor: status up, end of file down
GRACEFUL_S = 30  # in-flight requests get this long once SIGTERM arrives, one process or several
# A worker closes a connection this old after its next response: clients keep a few connections open, and
# each reconnection goes to whichever worker accepts first, so the load spreads over the workers again.
CONNECTION_MAX_AGE_S = 5.0


# --- how many, and what each gets -------------------------------------------------------------------


def auto_processes(cpus: int) -> int:
    """INFERENCE_PROCESSES=0: one serving process per CPU of the pod's limit, each with one CPU's share of
    the model (OpenVINO: a stream of one thread, the bare sweep's best on every CPU measured).

    Measured on 2 vCPUs (AMD EPYC, bench.ceiling: the null model, 640x272 JPEGs, load clients on the same
    CPUs, other work on the machine): one process 996 and 749 frames/s, two 1447 and 1109 (1.45x, 1.48x).
    One process with batches is bound by the CPU more than by its interpreter lock (JPEG decoding runs
    outside it: 1.69 of the 2 CPUs busy), with single frames by the lock (1.24 CPUs); two use the CPUs
    better and lose less to other work. The real model served 0.93 of the bare limit from two processes
    against 0.96 from one. A process per CPU costs a copy of the interpreter, libraries and model each
    (270-306 MB RSS on 2 vCPUs, docs/PERFORMANCE.md); a pod short of memory sets INFERENCE_PROCESSES lower."""
    return max(1, cpus)


def processes_for(settings: InferenceSettings, cpus: int | None = None) -> int:
    return settings.processes or auto_processes(cpu_limit() if cpus is None else cpus)


def cpu_shares(cpus: int, processes: int) -> list[int]:
    """The pod's CPUs split over the processes, as evenly as whole CPUs go (16 over 3: 6, 5, 5); at least
    one each, so more processes than CPUs share them."""
    base, extra = divmod(cpus, processes)
    return [max(1, base + (1 if index < extra else 0)) for index in range(processes)]


def cpu_sets(available: list[int], shares: list[int]) -> list[list[int]]:
    """The CPUs this process may run on, split over the workers in proportion to their shares (contiguous
    runs); with fewer CPUs than workers, one CPU each, in turn."""
    if len(available) < len(shares):
        return [[available[index % len(available)]] for index in range(len(shares))]
    total, sets, start = sum(shares), [], 0
    for index in range(len(shares)):
        end = round(len(available) * sum(shares[: index + 1]) / total)
        sets.append(available[start:end])
        start = end
    return sets


def worker_number() -> int | None:
    """This process's worker number when a supervisor started it, else None (the only process)."""
    value = os.environ.get(WORKER)
    return int(value) if value else None


def serving_processes() -> int:
    return int(os.environ.get(WORKER_PROCESSES) or 1)


def serving_share() -> int:
    """CPUs this process sizes its model instances and threads from: its share as a worker, else the
    pod's limit."""
    value = os.environ.get(WORKER_CPUS)
    return int(value) if value else cpu_limit()


def runtime_fields() -> dict[str, Any]:
    """What /v1/model's runtime adds: instances and threads there are each process's."""
    return {"processes": serving_processes(), "cpus_per_process": serving_share(), "cpu_limit": cpu_limit()}


# --- a worker ------------------------------------------------------------------------------------------


class _TextWithWorker(logging.Formatter):
    def __init__(self, worker: int):
        super().__init__(TEXT_FORMAT.replace("%(name)s", f"worker={worker} %(name)s"))


class _JsonWithWorker(JsonFormatter):
    def __init__(self, worker: int):
        super().__init__()
        self.worker = worker

    def format(self, record: logging.LogRecord) -> str:
        document = orjson.loads(super().format(record))
        return orjson.dumps({**document, "worker": self.worker}).decode()


def tag_logs(worker: int) -> None:
    """Every line of this process says which worker wrote it (text: `worker=N`, JSON: "worker": N)."""
    for handler in logging.getLogger().handlers:
        handler.setFormatter(_JsonWithWorker(worker) if json_lines() else _TextWithWorker(worker))


def worker_setup(worker: int) -> tuple[socket.socket, socket.socket]:
    """A worker's own set-up, before its app starts: its log lines tagged, its CPUs, and its two sockets from
    the supervisor (the API's listening socket, the status line)."""
    tag_logs(worker)
    cpu_set = os.environ.get(WORKER_CPU_SET)
    if cpu_set:
        # Before the app's threads start: OpenVINO pins its streams to CPUs of the process's affinity, and
        # workers that all saw every CPU pinned theirs to the same first ones (two 1-stream workers on 2 vCPUs:
        # each ran at half speed on CPU 0).
        os.sched_setaffinity(0, {int(c) for c in cpu_set.split(",")})
    return socket.socket(fileno=int(os.environ[LISTEN_FD])), socket.socket(fileno=int(os.environ[STATUS_FD]))


def report(status: socket.socket, model: dict[str, Any] | None, error: str | None) -> None:
    """Tell the supervisor this worker's model is loaded (its name and version) or failed to load."""
    status.sendall(orjson.dumps({"ready": True, **model} if model is not None else {"error": error}) + b"\n")


def lifeline(status: socket.socket, stop: Callable[[], None]) -> None:
    """The supervisor never writes: end of file means it is gone, and a worker without it stops (drains).
    Runs in a thread of its own."""
    try:
        while status.recv(64):
            pass
    except OSError:
        pass
    log.warning("the supervisor is gone: stopping")
    stop()


# --- the supervisor -------------------------------------------------------------------------------------


@dataclass
class Worker:
    number: int
    cpus: int
    cpu_set: list[int]
    process: subprocess.Popen[bytes] | None = None
    line: socket.socket | None = None  # the supervisor's end of the worker's status line
    received: bytes = b""
    ready: bool = False
    served: bool = False  # was ready once: dying after that gets a new process
    failure: str | None = None  # failed to load, or died before it had loaded
    model: dict[str, Any] = field(default_factory=dict)
    exited: bool = True  # its process's end was seen (and handled)


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"


def bind(host: str, port: int) -> socket.socket:
    """The API's listening socket, bound once, inherited by every worker. Connections arriving before a
    worker accepts wait in its queue."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


class Supervisor:
    POLL_S = 0.1

    def __init__(self, settings: InferenceSettings, processes: int, cpus: int):
        self.settings = settings
        shares = cpu_shares(cpus, processes)
        sets = cpu_sets(sorted(os.sched_getaffinity(0)), shares)
        self.workers = [
            Worker(n + 1, share, cpu_set) for n, (share, cpu_set) in enumerate(zip(shares, sets, strict=True))
        ]
        self.listener: socket.socket | None = None
        self.metrics_dir = tempfile.mkdtemp(prefix="inference-metrics-")
        self.registry = CollectorRegistry()
        MultiProcessCollector(self.registry, path=self.metrics_dir)  # type: ignore[no-untyped-call]
        self.restarts = Counter(
            "inference_worker_restarts",
            "Serving processes started again after dying (a worker dying before its model loaded is not: /healthz "
            "fails instead)",
            registry=self.registry,
        )
        self.draining = False
        self.drain_deadline = 0.0
        self.ops = EdgeServer(
            ops_config(
                ops_app(
                    {"/healthz": json_probe(self.healthz), "/readyz": json_probe(self.readyz), "/metrics": self.metrics}
                ),
                settings,
                settings.host,
                settings.ops_port,
                settings.log_level,
            )
        )

    # probes and metrics
    def healthz(self) -> tuple[int, Any]:
        failures = [w.failure for w in self.workers if w.failure]
        if failures:
            return 503, error_document("model_unavailable", "; ".join(failures))
        return 200, {"status": "ok", "processes": len(self.workers)}

    def readyz(self) -> tuple[int, Any]:
        if self.draining:
            return 503, error_document("shutting_down", "the service is shutting down")
        failures = [w.failure for w in self.workers if w.failure]
        if failures:
            return 503, error_document("model_unavailable", "; ".join(failures))
        loading = [str(w.number) for w in self.workers if not w.ready]
        if loading:
            return 503, error_document("model_loading", f"worker(s) {', '.join(loading)} still loading the model")
        return 200, {"status": "ready", **self.workers[0].model, "processes": len(self.workers)}

    async def metrics(self) -> tuple[int, bytes, str]:
        return 200, await asyncio.to_thread(generate_latest, self.registry), CONTENT_TYPE_LATEST

    # workers
    def start(self, worker: Worker) -> None:
        assert self.listener is not None
        ours, theirs = socket.socketpair()
        env = {
            **os.environ,
            WORKER: str(worker.number),
            WORKER_CPUS: str(worker.cpus),
            WORKER_CPU_SET: ",".join(map(str, worker.cpu_set)),
            WORKER_PROCESSES: str(len(self.workers)),
            LISTEN_FD: str(self.listener.fileno()),
            STATUS_FD: str(theirs.fileno()),
            "PROMETHEUS_MULTIPROC_DIR": self.metrics_dir,
        }
        worker.process = subprocess.Popen(
            [sys.executable, "-m", "inference_service"], env=env, pass_fds=(self.listener.fileno(), theirs.fileno())
        )
        theirs.close()
        ours.setblocking(False)
        worker.line, worker.received, worker.ready, worker.exited = ours, b"", False, False
        log.info("started worker %d (pid %d, %d CPU(s))", worker.number, worker.process.pid, worker.cpus)

    def _read(self, worker: Worker) -> None:
        while worker.line is not None:
            try:
                data = worker.line.recv(4096)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                worker.line.close()
                worker.line = None
                return
            worker.received += data
            while b"\n" in worker.received:
                line, worker.received = worker.received.split(b"\n", 1)
                report = orjson.loads(line)
                if report.get("ready"):
                    worker.ready = worker.served = True
                    worker.model = {"model": report.get("model"), "version": report.get("version")}
                    log.info("worker %d has its model loaded", worker.number)
                else:
                    worker.failure = f"worker {worker.number}: model failed to load: {report.get('error')}"

    def poll(self) -> None:
        for worker in self.workers:
            self._read(worker)
            process = worker.process
            if process is None or worker.exited or process.poll() is None:
                continue
            worker.exited = True
            self._read(worker)
            # Its live gauges leave /metrics; its counters stay in the sums.
            mark_process_dead(process.pid, self.metrics_dir)  # type: ignore[no-untyped-call]
            worker.ready = False
            if worker.line is not None:
                worker.line.close()
                worker.line = None
            how = describe_exit(process.returncode)
            if self.draining:
                log.info("worker %d stopped (%s)", worker.number, how)
            elif worker.failure:
                log.error("%s; not started again (/healthz fails)", worker.failure)
            elif worker.served:
                log.error("worker %d (pid %d) died (%s): starting it again", worker.number, process.pid, how)
                self.restarts.inc()
                self.start(worker)
            else:
                worker.failure = f"worker {worker.number} died ({how}) before its model was loaded"
                log.error("%s; not started again (/healthz fails)", worker.failure)

    def signal_workers(self, signum: int) -> None:
        for worker in self.workers:
            if worker.process is not None and worker.process.poll() is None:
                worker.process.send_signal(signum)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if not self.draining:
            log.info("draining %d worker(s)", sum(not w.exited for w in self.workers))
            self.draining = True
            # Each worker gets the graceful period and its model's shutdown; then they are killed.
            self.drain_deadline = time.monotonic() + GRACEFUL_S + 10
        self.signal_workers(signum)  # a second SIGINT: the workers stop without waiting

    async def serve(self) -> None:
        handled = (signal.SIGINT, signal.SIGTERM)
        previous = {sig: signal.signal(sig, self._on_signal) for sig in handled}
        try:
            for worker in self.workers:
                self.start(worker)
            ops = asyncio.create_task(self.ops.serve(), name="ops-server")
            while not ops.done():
                self.poll()
                if self.draining:
                    if self.listener is not None:
                        self.listener.close()  # the workers' copies close as they stop
                        self.listener = None
                    if all(w.exited for w in self.workers):
                        break
                    if time.monotonic() > self.drain_deadline:
                        log.error("workers still running %d s after SIGTERM: killing them", GRACEFUL_S + 10)
                        self.signal_workers(signal.SIGKILL)
                await asyncio.sleep(self.POLL_S)
            self.ops.should_exit = True
            await ops
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def run(self) -> int:
        """0 once drained; 1 when the API port cannot be bound (as one process's uvicorn)."""
        try:
            try:
                self.listener = bind(self.settings.host, self.settings.port)
            except OSError as exc:
                log.error("cannot listen on %s:%d: %s", self.settings.host, self.settings.port, exc)
                return 1
            log.info("serving on %s:%d from %d processes", self.settings.host, self.settings.port, len(self.workers))
            with asyncio.Runner(loop_factory=self.ops.config.get_loop_factory()) as runner:
                runner.run(self.serve())
        finally:
            self.signal_workers(signal.SIGKILL)  # only left running when the supervisor itself failed
            for worker in self.workers:
                if worker.process is not None:
                    worker.process.wait()
            shutil.rmtree(self.metrics_dir, ignore_errors=True)
        return 0
