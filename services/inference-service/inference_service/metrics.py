from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class ServiceMetrics:
    """Per-app registry, so several apps (tests) never collide on global collectors. With several serving
    processes (serving.py) each writes its values to the multiprocess directory and the supervisor's /metrics
    sums the counters and histograms; each gauge says how its processes' values combine (live*: those of
    running processes only). `worker`: this process's number there, for the per-process frame counter."""

    def __init__(self, worker: int | None = None) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "inference_requests", "HTTP requests by endpoint and status", ["endpoint", "status"], registry=self.registry
        )
        self.frames = Counter("inference_frames", "Frames inferred", registry=self.registry)
        self.frame_errors = Counter(
            "inference_frame_errors", "Frames rejected, by reason", ["reason"], registry=self.registry
        )
        self.rejected = Counter(
            "inference_overload_rejections", "Requests answered 503 because the queue was full", registry=self.registry
        )
        self.abandoned = Counter(
            "inference_abandoned_frames",
            "Frames of requests whose client disconnected, never run: by stage (decode: not decoded; "
            "queue: dropped from the batcher's queue)",
            ["stage"],
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "inference_batch_size", "Frames per model run", buckets=(1, 2, 4, 8, 16, 32, 64), registry=self.registry
        )
        self.batch_seconds = Histogram(
            "inference_batch_seconds",
            "Model run time per batch",
            buckets=(0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5),
            registry=self.registry,
        )
        self.decode_seconds = Histogram(
            "inference_decode_seconds",
            "Decode and resize time per image (the header check included)",
            buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1),
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "inference_queue_depth", "Frames waiting for the model", multiprocess_mode="livesum", registry=self.registry
        )
        self.model_loaded = Gauge(
            "inference_model_loaded",
            "1 once the model is loaded (in every serving process)",
            multiprocess_mode="livemin",
            registry=self.registry,
        )
        self.runtime = Gauge(
            "inference_runtime_info",
            "1 for the runtime serving the model: backend, precision",
            ["backend", "precision"],
            multiprocess_mode="livemax",
            registry=self.registry,
        )
        self.instances = Gauge(
            "inference_model_instances",
            "Model instances run at once (all serving processes')",
            multiprocess_mode="livesum",
            registry=self.registry,
        )
        self.threads = Gauge(
            "inference_threads_per_instance",
            "Runtime threads of each model instance",
            multiprocess_mode="livemax",
            registry=self.registry,
        )
        self.cpu_limit = Gauge(
            "inference_cpu_limit",
            "CPUs of the pod's limit (cgroup quota)",
            multiprocess_mode="livemax",
            registry=self.registry,
        )
        self.processes = Gauge(
            "inference_serving_processes",
            "Processes serving the API (INFERENCE_PROCESSES)",
            multiprocess_mode="livemax",
            registry=self.registry,
        )
        # Per serving process, to see how the connections spread over them.
        self.worker_frames = (
            Counter(
                "inference_worker_frames", "Frames inferred by each serving process", ["worker"], registry=self.registry
            ).labels(str(worker))
            if worker is not None
            else None
        )
        self.gate_f1 = Gauge(
            "inference_accuracy_gate_f1",
            "F1 (IoU 0.5, by class) of the reduced precision against f32 in the verdict the service read; "
            "source: beside_model, cache or startup; allowed: whether it passed",
            ["precision", "source", "allowed"],
            multiprocess_mode="livemax",
            registry=self.registry,
        )

    def observe_runtime(self, runtime: dict[str, Any]) -> None:
        self.runtime.labels(str(runtime["backend"]), str(runtime["precision"])).set(1)
        self.instances.set(runtime["instances"])
        self.threads.set(runtime["threads_per_instance"])
        self.cpu_limit.set(runtime["cpu_limit"])
        gate = runtime.get("accuracy_gate") or {}
        if isinstance(gate.get("f1"), int | float):
            precision = str(gate.get("precision", "bf16"))
            allowed = any(value is True for key, value in gate.items() if key.endswith("_allowed"))
            self.gate_f1.labels(precision, str(gate.get("source", "beside_model")), str(allowed).lower()).set(
                gate["f1"]
            )

    def observe_batch(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.batch_seconds.observe(seconds)
        self.frames.inc(size)
        if self.worker_frames is not None:
            self.worker_frames.inc(size)
