"""The bf16 verdict a pod reaches by itself: under INFERENCE_PRECISION=auto, on a CPU with native bf16, when no
verdict for the model lies beside it, the service measures bf16 against f32 on the calibration clip its image
ships (INFERENCE_GATE_CLIP) before it reports ready, and keeps the verdict at INFERENCE_GATE_CACHE_URI keyed by
the model's sha256, the CPU model and the runtime's version: the next pod on the same kind of node reads it
instead of measuring again. A verdict is a measurement of these bytes on this CPU, so a new model, another
instance family or another OpenVINO version is measured afresh.

Serving processes of one pod share the cache directory: a file lock makes the first measure and the others
read its verdict."""

from __future__ import annotations

import fcntl
import json
import logging
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from vidpipe.storage import open_storage

from .accuracy_gate import GateVerdict, judge
from .backends import openvino_version
from .cpu import bf16_flags, cpu_model
from .preprocess import one_line
from .settings import InferenceSettings

log = logging.getLogger(__name__)

# (local model path, its sha256) -> the verdict; what model.load_model asks when no verdict lies beside the model.
StartupGate = Callable[[Path, str], GateVerdict]


def cache_uri(settings: InferenceSettings) -> str:
    return settings.gate_cache_uri or str(Path(settings.model_cache_dir) / "gates")


def cache_key(sha256: str, cpu: str, flags: list[str], runtime: str, precision: str) -> str:
    """<model sha256>/<cpu model>+<bf16 flags>/<runtime>-<precision>.json"""
    slug = re.sub(r"[^a-z0-9]+", "-", cpu.lower()).strip("-")[:80] or "unknown-cpu"
    return f"{sha256}/{slug}+{'+'.join(sorted(flags)) or 'none'}/{runtime}-{precision}.json"


@contextmanager
def _exclusive(settings: InferenceSettings) -> Iterator[None]:
    """One measurement per pod at a time: the serving processes share the model cache directory."""
    directory = Path(settings.model_cache_dir)
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".startup-gate.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _cached(settings: InferenceSettings, key: str, sha256: str, precision: str) -> GateVerdict | None:
    try:
        report = json.loads(open_storage(cache_uri(settings)).get(key))
    except Exception:  # absent (FileNotFoundError, S3 NoSuchKey), unreadable or not JSON: measure again
        return None
    verdict = replace(judge(report, sha256, precision), source="cache")
    return verdict if verdict.report is not None else None


def _store(settings: InferenceSettings, key: str, report: dict[str, Any]) -> None:
    uri = cache_uri(settings)
    try:
        open_storage(uri).put(key, (json.dumps(report, indent=2) + "\n").encode(), "application/json")
    except Exception as exc:  # the verdict still holds for this pod; the next one measures again
        log.warning("start-up gate verdict not cached at %s (%s): the next pod measures again", uri, one_line(exc))


def gate_for(settings: InferenceSettings, precision: str = "bf16") -> StartupGate:
    """The start-up gate for these settings, as model.load_model takes it."""

    def verdict(model_path: Path, sha256: str) -> GateVerdict:
        flags, cpu = bf16_flags(), cpu_model()
        key = cache_key(sha256, cpu, flags, f"openvino-{openvino_version()}", precision)
        with _exclusive(settings):
            cached = _cached(settings, key, sha256, precision)
            if cached is not None:
                log.info("accuracy gate: %s (cached at %s/%s)", cached.reason, cache_uri(settings), key)
                return cached
            return _measure(settings, model_path, sha256, precision, key)

    return verdict


def _measure(settings: InferenceSettings, model_path: Path, sha256: str, precision: str, key: str) -> GateVerdict:
    if not settings.gate_at_startup:
        return GateVerdict(
            precision, False, "no verdict for this model and CPU, and INFERENCE_GATE_AT_STARTUP is false", source="none"
        )
    clip = Path(settings.gate_clip)
    if not clip.is_file():
        return GateVerdict(
            precision,
            False,
            f"no verdict for this model and CPU, and no calibration clip at {clip} (INFERENCE_GATE_CLIP)",
            source="none",
        )
    from .calibration import gate_report  # loads models: only when a measurement is due

    log.info(
        "accuracy gate: measuring %s against f32 on %s (%d frames) before serving",
        precision,
        clip.name,
        settings.gate_frames,
    )
    started = time.perf_counter()
    try:
        report = gate_report(settings, model_path, precision, clip, settings.gate_frames)
    except Exception as exc:  # a measurement that cannot run is no verdict: f32, measured again next start
        log.warning("accuracy gate could not run (%s): serving f32", one_line(exc))
        return GateVerdict(precision, False, f"the start-up gate could not run: {one_line(exc)}", source="none")
    report["gate_seconds"] = round(time.perf_counter() - started, 2)
    report["cache_key"] = key
    _store(settings, key, report)
    verdict = replace(judge(report, sha256, precision), source="startup")
    log.info("accuracy gate: %s (measured in %.1f s on %s)", verdict.reason, report["gate_seconds"], report["cpu"])
    return verdict
