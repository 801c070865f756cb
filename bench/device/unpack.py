"""Unpack the bundle of bench/device/pack.py on the machine with more cores, with the standard library alone
(run as a script, before anything of ours can be imported):

    python3 bench/device/unpack.py --bundle .devbench/bundle --site /tmp/site

Wheels and the stripped openvino go into --site (put it first on PYTHONPATH); the model and the sample
video into the repository's .cache/, each checked against the manifest's sha256 (a file already there with
the right digest is left as it is).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import lzma
import shutil
import sys
import tarfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent


def digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def unpack_wheel(wheel: Path, site: Path) -> None:
    """What `pip install --no-deps --target` does for these wheels: extract, and lift a .data folder's
    purelib/platlib into the site (none of these wheels has scripts that the run needs)."""
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    for data in site.glob("*.data"):
        for kind in ("purelib", "platlib"):
            folder = data / kind
            if folder.is_dir():
                for item in folder.iterdir():
                    shutil.move(str(item), site / item.name)
        shutil.rmtree(data)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, default=ROOT / ".devbench" / "bundle")
    parser.add_argument("--site", type=Path, default=Path("/tmp/site"))
    args = parser.parse_args(argv)
    started = time.monotonic()
    manifest = json.loads((args.bundle / "manifest.json").read_text())
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    if manifest.get("python") != f"{sys.version_info.major}.{sys.version_info.minor}":
        print(f"warning: the bundle is for Python {manifest.get('python')}, this is {sys.version.split()[0]}")
    args.site.mkdir(parents=True, exist_ok=True)
    for wheel in sorted((args.bundle / "whl").glob("*.whl")):
        expected = manifest["wheels"].get(wheel.name)
        if expected and digest(wheel) != expected:
            print(f"error: {wheel.name}: sha256 differs from the manifest", file=sys.stderr)
            return 1
        if "-cp3" in wheel.name and f"-{tag}-" not in wheel.name:
            print(f"warning: {wheel.name} is not built for {tag}")
        unpack_wheel(wheel, args.site)
    archive = args.bundle / manifest["openvino"]["archive"]
    with tarfile.open(archive, "r:xz") as tar:
        if sys.version_info >= (3, 12):
            tar.extractall(args.site, filter="data")
        else:
            tar.extractall(args.site)
    for relative, entry in manifest["files"].items():
        target = ROOT / relative
        if target.exists() and digest(target) == entry["sha256"]:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        source = args.bundle / entry["from"]
        partial = target.with_name(target.name + ".partial")
        if source.suffix == ".xz":
            with lzma.open(source) as src, partial.open("wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
        else:
            shutil.copyfile(source, partial)
        if digest(partial) != entry["sha256"]:
            print(f"error: {relative}: sha256 differs from the manifest after unpacking", file=sys.stderr)
            return 1
        partial.replace(target)
    print(
        f"unpacked {len(manifest['wheels'])} wheels and openvino {manifest['openvino']['version']} into {args.site}, "
        f"{len(manifest['files'])} files into {ROOT / '.cache'} in {time.monotonic() - started:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
