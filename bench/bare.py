"""(a) The bare backends: the limit every other figure is measured against.

The service's own backends (inference_service.backends) on the default model, no I/O: onnxruntime f32 and
OpenVINO f32 (bf16 where the CPU computes it natively, int8 where `make int8` made the model), each with one
instance and with instances x threads splitting the CPUs, at batch sizes 1..16. The best configuration is
the limit; onnxruntime f32 with one instance, the limit before the OpenVINO backend, is reported beside it.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from bench.common import log

BATCHES = (1, 2, 4, 8, 16)


def config_name(config: dict) -> str:
    return (
        f"{config['backend']} {config['precision']}, {config['instances']} instance(s) x "
        f"{config['threads_per_instance']} thread(s)"
    )


def instance_counts(cpus: int) -> list[int]:
    """One instance on every CPU's thread, one per 2 CPUs (onnxruntime's default), one per CPU
    (OpenVINO's default): inference_service.backends.default_instances."""
    from inference_service.backends import default_instances

    return sorted({1, default_instances(cpus), default_instances(cpus, openvino=True)})


INPUT_SCALE = 1 / 255  # the service's default INFERENCE_INPUT_SCALE


class BareBackends:
    """The limit: the service's own backends (inference_service.backends, the code path the service
    runs) on the default model, no I/O, over backend x precision x instance count x batch size.
    Instances run concurrently, one thread each, as the service's instances do."""

    def __init__(self, model: Path, frames: list[np.ndarray], cpus: int, try_bf16: bool = False):
        self.model, self.cpus, self.try_bf16 = model, cpus, try_bf16
        self.pixels = np.stack([cv2.resize(f, (416, 416))[..., ::-1] for f in frames])  # RGB uint8 NHWC
        self.prepared = self.pixels.transpose(0, 3, 1, 2).astype(np.float32) * np.float32(INPUT_SCALE)
        self.open: dict[str, tuple[Any, int]] = {}  # name -> (backend, best batch), for the references
        self.points: list[dict] = []  # every point as measured, for a run cut short mid-sweep

    def backend(self, config: dict) -> Any:
        from inference_service.backends import OpenVinoBackend, OrtBackend

        instances, threads = config["instances"], config["threads_per_instance"]
        if config["backend"] == "onnxruntime":
            return OrtBackend(self.model, instances, threads)
        # As the service opens it (uint8 pixels in, the cast and scale inside OpenVINO's graph).
        path = self.int8_model() if config["precision"] == "int8" else self.model
        return OpenVinoBackend(path, instances, threads, config["precision"], INPUT_SCALE)

    def int8_model(self) -> Path:
        from inference_service.accuracy_gate import INT8_XML

        return self.model.with_name(self.model.name + INT8_XML)

    def int8_exclusion(self) -> str | None:
        """Why the int8 model may not set the limit (its gate did not pass), or None. The service refuses an
        int8 model without a passed gate, so neither may the limit use one."""
        from inference_service.accuracy_gate import read_verdict
        from vidpipe.storage import sha256_file

        verdict = read_verdict(str(self.model), sha256_file(self.model), str(self.model.parent), "int8")
        return None if verdict.allowed else verdict.reason

    def fps(self, backend: Any, batch: int, seconds: float) -> float:
        prepared = self.pixels if getattr(backend, "preprocessing", None) else self.prepared
        tensor = np.ascontiguousarray(np.resize(prepared, (batch, *prepared.shape[1:])))
        counts = [0] * backend.instances

        def instance(index: int) -> None:
            try:
                backend.run(index, tensor)  # warm-up, before the clock starts for anyone
            except BaseException:
                barrier.abort()  # the others (and the clock) would wait for this one for ever
                raise
            barrier.wait()
            stop = time.perf_counter() + seconds
            while time.perf_counter() < stop:
                backend.run(index, tensor)
                counts[index] += batch

        barrier = threading.Barrier(backend.instances + 1)
        with ThreadPoolExecutor(backend.instances) as pool:
            futures = [pool.submit(instance, i) for i in range(backend.instances)]
            try:
                barrier.wait()
            except threading.BrokenBarrierError:
                for future in futures:
                    future.result()  # raises the instance's own error
                raise
            started = time.perf_counter()
            for future in futures:
                future.result()
        return round(sum(counts) / (time.perf_counter() - started), 2)

    def configs(self) -> tuple[list[dict], list[str]]:
        from inference_service.backends import openvino_version, threads_for
        from inference_service.cpu import bf16_flags

        runtimes = [("onnxruntime", "f32")]
        skipped = []
        if openvino_version() is None:
            skipped.append("openvino: the package cannot be imported")
        else:
            runtimes.append(("openvino", "f32"))
            if bf16_flags():
                runtimes.append(("openvino", "bf16"))
            elif self.try_bf16:  # a sandbox's /proc/cpuinfo may hide flags the CPU has: ask, and see
                runtimes.append(("openvino", "bf16"))
                skipped.append("bf16: asked although /proc/cpuinfo lists no AMX-BF16 or AVX512-BF16")
            else:
                skipped.append("bf16: not supported by this CPU (no AMX-BF16 or AVX512-BF16)")
            if self.int8_model().is_file():
                runtimes.append(("openvino", "int8"))
            else:
                skipped.append("int8: no int8 model beside the model (python -m tools.quantize)")
        configs = [
            {"backend": b, "precision": p, "instances": n, "threads_per_instance": threads_for(self.cpus, n)}
            for b, p in runtimes
            for n in instance_counts(self.cpus)
        ]
        return configs, skipped

    def sweep(self, seconds: float) -> dict:
        configs, skipped = self.configs()
        measured = []
        for config in configs:
            name = config_name(config)
            backend = self.backend(config)
            if backend.precision != config["precision"]:  # OpenVINO fell back: not the asked configuration
                skipped.append(f"{name}: the runtime computes in {backend.precision} on this CPU")
                continue
            by_batch = {}
            for batch in BATCHES:
                by_batch[batch] = self.fps(backend, batch, seconds)
                self.points.append({"name": name, "batch": batch, "fps": by_batch[batch]})
                log(f"bare {name}, batch {batch}: {by_batch[batch]} frames/s")
            best_batch = max(by_batch, key=by_batch.__getitem__)
            measured.append(
                {
                    **config,
                    "name": name,
                    "fps_by_batch": by_batch,
                    "best_batch": best_batch,
                    "fps": by_batch[best_batch],
                    # Measured, to show what it would buy, but not a candidate for the limit.
                    "excluded": self.int8_exclusion() if config["precision"] == "int8" else None,
                }
            )
            self.open[name] = (backend, best_batch)
        best = max((c for c in measured if not c["excluded"]), key=lambda c: c["fps"])
        ort_f32 = max(
            (c for c in measured if c["backend"] == "onnxruntime" and c["instances"] == 1),
            key=lambda c: c["fps"],
        )
        # Keep the two limits' backends open for the back-to-back references; free the rest.
        self.open = {k: v for k, v in self.open.items() if k in (best["name"], ort_f32["name"])}
        self.best_name, self.ort_name = best["name"], ort_f32["name"]
        log(f"bare best: {best['name']}, batch {best['best_batch']}: {best['fps']} frames/s")
        return {
            "configurations": measured,
            "skipped": skipped,
            "best": {k: v for k, v in best.items() if k != "fps_by_batch"},
            "ort_f32": {k: v for k, v in ort_f32.items() if k != "fps_by_batch"},
            "fps": best["fps"],
        }

    def reference(self, seconds: float, label: str, which: str = "best") -> float:
        """A limit again, right next to a figure compared with it: this shared VM's speed drifts
        by +-20% over minutes, so a ratio of figures taken minutes apart measures the drift."""
        name = self.best_name if which == "best" else self.ort_name
        backend, batch = self.open[name]
        fps = self.fps(backend, batch, seconds)
        log(f"bare {name} reference ({label}): {fps} frames/s")
        return fps
