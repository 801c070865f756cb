"""Build the service images exactly as `cdk deploy` would: from the Docker image assets that the CDK
app staged in its cloud assembly (cdk.out/*.assets.json: context folder, Dockerfile, build arguments,
platform), with podman instead of Docker. Only BASE_IMAGE differs where no registry is reachable.

    python -m tools.images.build [--assembly cdk.out] [--base registry|local]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tools.images.base import ensure_base
from tools.images.engine import Podman
from tools.paths import CACHE, ROOT

TAG = "dev"
SIZES_FILE = CACHE / "images" / "sizes.json"


@dataclass(frozen=True)
class ImageBuild:
    """One Docker image asset of the cloud assembly."""

    service: str
    context: Path
    dockerfile: str
    build_args: dict[str, str]
    platform: str | None

    @property
    def reference(self) -> str:
        return image_reference(self.service)


def image_reference(service: str) -> str:
    return f"localhost/vidpipe/{service}:{TAG}"


def assembly_images(assembly: Path) -> list[ImageBuild]:
    builds: dict[str, ImageBuild] = {}
    for manifest in sorted(assembly.glob("*.assets.json")):
        for asset in json.loads(manifest.read_text()).get("dockerImages", {}).values():
            source = asset["source"]
            args = source.get("dockerBuildArgs", {})
            service = args.get("SERVICE")
            if not service:
                raise ValueError(f"{manifest.name}: an image asset without a SERVICE build argument: {source}")
            builds[service] = ImageBuild(
                service,
                assembly / source["directory"],
                source.get("dockerFile", "Dockerfile"),
                args,
                source.get("platform"),
            )
    if not builds:
        raise FileNotFoundError(f"no Docker image assets in {assembly}/*.assets.json: run `make synth` first")
    return sorted(builds.values(), key=lambda b: b.service)


def build(podman: Podman, image: ImageBuild, base: str | None) -> None:
    args = [
        "build",
        "--pull=never" if base else "--pull=missing",
        "--network",
        "host",
        "--layers",
        "--file",
        str(image.context / image.dockerfile),
        "--tag",
        image.reference,
    ]
    if image.platform:
        args += ["--platform", image.platform]
    for key, value in image.build_args.items():
        args += ["--build-arg", f"{key}={value}"]
    if base:
        args += ["--build-arg", f"BASE_IMAGE={base}"]
    # pip inside the build trusts the CA bundle this machine names (a TLS-intercepting proxy, say):
    # mounted for the build only, named through a build argument, never part of a layer.
    ca_bundle = os.environ.get("PIP_CERT") or os.environ.get("SSL_CERT_FILE")
    if ca_bundle and Path(ca_bundle).is_file():
        args += [
            "--volume",
            f"{Path(ca_bundle).resolve()}:/run/build-ca.pem:ro",
            "--build-arg",
            "PIP_CERT=/run/build-ca.pem",
        ]
    podman.run(*args, str(image.context), capture=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assembly", type=Path, default=ROOT / "cdk.out")
    parser.add_argument(
        "--base",
        choices=["registry", "local"],
        default="local",
        help="registry: the Dockerfile's default BASE_IMAGE; local: a base built from Debian packages",
    )
    options = parser.parse_args(argv)
    podman = Podman()
    images = assembly_images(options.assembly)
    base = ensure_base(podman) if options.base == "local" else None
    sizes = {}
    for image in images:
        started = time.monotonic()
        build(podman, image, base)
        sizes[image.service] = podman.image_size(image.reference)
        print(f"{image.reference}: {sizes[image.service] / 1e6:.0f} MB, built in {time.monotonic() - started:.0f} s")
    SIZES_FILE.parent.mkdir(parents=True, exist_ok=True)
    SIZES_FILE.write_text(json.dumps({"base": base, "bytes": sizes}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
