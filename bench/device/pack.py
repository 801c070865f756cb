"""python -m bench.device.pack: the bundle that travels with the working tree to a machine with more cores
(Python 3.12, numpy, onnxruntime, opencv, httpx, psutil, prometheus-client, PyYAML, uvloop installed; no
network there), for bench/device/run.sh.

Writes .devbench/bundle/ (ignored by git: it travels to that machine beside the working tree, not in it):
  whl/*.whl                 cp312 manylinux wheels the service imports and that machine lacks, the versions
                            of this venv (unpacked there by plain zip extraction, bench/device/unpack.py)
  openvino-<v>-<tag>-stripped.tar.xz
                            the openvino wheel's files less what a CPU-only ONNX run never loads: the GPU
                            and NPU plugins and the GPU kernel cache (libs/cache.json), the TensorFlow,
                            TF Lite, PyTorch, Paddle, JAX and GGUF frontends, the C API, headers, cmake
                            files, tools (benchmark_app, ovc), type stubs
  yolov4-tiny.onnx.xz (+ .labels.txt, .stamp.json, .accuracy.json, .int8.xml/.bin where present), bikes.mp4
  manifest.json             sha256 of every file as it is to be unpacked
Downloads are kept in .devbench/dl (never bundled). Prints what would travel and fails over --limit-mib.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import io
import json
import lzma
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

from bench.null_model import null_model
from inference_service.accuracy_gate import int8_paths
from tools.paths import DEFAULT_MODEL, ROOT, SAMPLE_VIDEO

BUNDLE = ROOT / ".devbench" / "bundle"
DOWNLOADS = ROOT / ".devbench" / "dl"
# What inference_service, vidpipe (services/shared) and bench import and that machine lacks.
WHEELS = (
    "fastapi",
    "annotated-doc",
    "starlette",
    "pydantic",
    "pydantic-core",
    "pydantic-settings",
    "python-dotenv",
    "annotated-types",
    "typing-inspection",
    "typing-extensions",
    "opentelemetry-api",  # fastapi imports it at module level
    "uvicorn",
    "click",  # uvicorn's
    "httptools",
    "orjson",
)
PLATFORMS = (
    "manylinux_2_35_x86_64",
    "manylinux_2_34_x86_64",
    "manylinux_2_31_x86_64",
    "manylinux_2_28_x86_64",
    "manylinux_2_27_x86_64",
    "manylinux_2_24_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
    "manylinux1_x86_64",
)
OPENVINO_DROP = (
    "openvino/libs/libopenvino_intel_gpu_plugin",
    "openvino/libs/libopenvino_intel_npu_plugin",
    "openvino/libs/cache.json",  # the GPU plugin's kernel tuning cache
    "openvino/libs/libopenvino_tensorflow_frontend",
    "openvino/libs/libopenvino_tensorflow_lite_frontend",
    "openvino/libs/libopenvino_pytorch_frontend",
    "openvino/libs/libopenvino_paddle_frontend",
    "openvino/libs/libopenvino_jax_frontend",
    "openvino/libs/libopenvino_gguf_frontend",
    "openvino/libs/libopenvino_c.",
    "openvino/libs/tbb.pc",
    "openvino/include/",
    "openvino/cmake/",
    "openvino/tools/",
    "openvino/torch/",
    "openvino/frontend/jax/",
    "openvino/frontend/paddle/",
    "openvino/frontend/pytorch/",
    "openvino/frontend/tensorflow/",
)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def download(name: str, version: str, python: str) -> Path:
    """The wheel of name==version for CPython `python` (e.g. "3.12"), from .devbench/dl or the index."""
    tag = "cp" + python.replace(".", "")
    stem = name.replace("-", "_").lower()
    found = [
        w
        for w in DOWNLOADS.glob("*.whl")
        if w.name.lower().startswith(f"{stem}-{version}-") and ("-py3-" in w.name or f"-{tag}-" in w.name)
    ]
    if found:
        return found[0]
    DOWNLOADS.mkdir(parents=True, exist_ok=True)
    platforms = [arg for p in PLATFORMS for arg in ("--platform", p)]
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:"]
        + ["--python-version", python, "--implementation", "cp", *platforms, "-d", str(DOWNLOADS)]
        + [f"{name}=={version}"],
        check=True,
    )
    return download(name, version, python)


def strip_openvino(wheel: Path, target: Path) -> dict:
    """The wheel's kept files as a tar.xz to unpack into a site directory; returns sizes."""
    kept = dropped = 0
    with zipfile.ZipFile(wheel) as source, tarfile.open(target, "w:xz", preset=6) as tar:
        for info in source.infolist():
            if info.is_dir():
                continue
            name = info.filename
            if name.startswith(OPENVINO_DROP) or name.endswith(".pyi") or name.endswith("/RECORD"):
                dropped += info.file_size
                continue
            data = source.read(info)
            member = tarfile.TarInfo(name)
            member.size = len(data)
            member.mode = 0o755 if name.endswith(".so") or ".so." in name else 0o644
            member.mtime = 0
            tar.addfile(member, io.BytesIO(data))
            kept += info.file_size
    return {"kept_bytes": kept, "dropped_bytes": dropped}


def travel_bytes() -> int:
    """Tracked plus untracked-not-ignored files: the working tree as it is copied to that machine."""
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    return sum((ROOT / f.decode()).stat().st_size for f in files if f and (ROOT / f.decode()).is_file())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.device.pack", description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", default="3.12", help="that machine's Python (default %(default)s)")
    parser.add_argument("--out", type=Path, default=BUNDLE)
    parser.add_argument(
        "--with-onnxruntime", action="store_true", help="bundle this venv's onnxruntime too (28 MB: over the limit)"
    )
    parser.add_argument(
        "--limit-mib", type=float, default=60.0, help="what the copy to that machine may hold, tree and bundle together"
    )
    args = parser.parse_args(argv)
    out: Path = args.out
    (out / "whl").mkdir(parents=True, exist_ok=True)
    for old in (out / "whl").glob("*.whl"):
        old.unlink()
    try:
        previous = json.loads((out / "manifest.json").read_text())
    except (OSError, ValueError):
        previous = {}
    manifest: dict = {"python": args.python, "wheels": {}, "files": {}}
    names = [*WHEELS, *(["onnxruntime"] if args.with_onnxruntime else [])]
    for name in names:
        wheel = download(name, importlib.metadata.version(name), args.python)
        (out / "whl" / wheel.name).write_bytes(wheel.read_bytes())
        manifest["wheels"][wheel.name] = sha256(wheel.read_bytes())
    ov_version = importlib.metadata.version("openvino")
    ov_tar = out / f"openvino-{ov_version}-cp{args.python.replace('.', '')}-stripped.tar.xz"
    for old in out.glob("openvino-*-stripped.tar.xz"):
        if old != ov_tar:
            old.unlink()
    if not ov_tar.exists():
        print(f"stripping openvino {ov_version} into {ov_tar.name} (a minute or two)", flush=True)
        manifest["openvino"] = {
            "version": ov_version,
            **strip_openvino(download("openvino", ov_version, args.python), ov_tar),
        }
    else:
        manifest["openvino"] = {**previous.get("openvino", {}), "version": ov_version}
    manifest["openvino"]["archive"] = ov_tar.name

    model_xz = out / (DEFAULT_MODEL.name + ".xz")
    model_bytes = DEFAULT_MODEL.read_bytes()
    manifest["files"][f".cache/models/{DEFAULT_MODEL.name}"] = {"from": model_xz.name, "sha256": sha256(model_bytes)}
    if (
        not model_xz.exists()
        or previous.get("files", {}).get(f".cache/models/{DEFAULT_MODEL.name}")
        != (manifest["files"][f".cache/models/{DEFAULT_MODEL.name}"])
    ):
        model_xz.write_bytes(lzma.compress(model_bytes, preset=9))
    beside = [DEFAULT_MODEL.with_name(DEFAULT_MODEL.stem + s) for s in (".labels.txt", ".stamp.json")]
    beside.append(DEFAULT_MODEL.with_name(DEFAULT_MODEL.name + ".accuracy.json"))
    # The int8 model, where make int8 made it (about 6 MB); its gate is run again there, not bundled.
    beside += int8_paths(DEFAULT_MODEL).values()
    for path in [*beside, SAMPLE_VIDEO]:
        stale = out / path.name
        if not path.exists():
            stale.unlink(missing_ok=True)
            continue
        stale.write_bytes(path.read_bytes())
        manifest["files"][str(path.relative_to(ROOT))] = {"from": path.name, "sha256": sha256(path.read_bytes())}
    # (g)'s model that costs nothing, built here: that machine has no onnx package to build it.
    null_model(DEFAULT_MODEL, out / "null.onnx")
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")

    bundle = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    tree = travel_bytes()
    mib = 2**20
    for f in sorted(out.rglob("*")):
        if f.is_file():
            print(f"  {f.stat().st_size / mib:7.2f} MiB  {f.relative_to(out)}")
    print(f"bundle {bundle / mib:.1f} MiB + working tree {tree / mib:.1f} MiB = {(bundle + tree) / mib:.1f} MiB")
    if (bundle + tree) / mib > args.limit_mib:
        print(f"over the {args.limit_mib} MiB limit", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
