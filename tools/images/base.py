"""A Python 3.11 base image from Debian bookworm's packages, for builders that reach no container registry.

It stands in for the official python:3.11-slim-bookworm (the Dockerfile's default BASE_IMAGE): the same
Debian release and Python minor version, `python` and `pip` on PATH, pip allowed to install into the
system interpreter (the official image's Python is its own build, so it has no such marker).
The root filesystem tarball is cached under .cache/images, keyed by the recipe.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys

from tools.images.engine import Podman
from tools.paths import CACHE

SUITE = "bookworm"
# libstdc++6 as in the official image: numpy, opencv and onnxruntime link it.
PACKAGES = ("python3", "python3-pip", "ca-certificates", "libstdc++6")
HOOKS = (
    'ln -sf /usr/bin/python3 "$1/usr/local/bin/python"',
    'ln -sf /usr/bin/pip3 "$1/usr/local/bin/pip"',
    'rm -f "$1"/usr/lib/python3*/EXTERNALLY-MANAGED',
)
# Documentation and translations are no use in a service image.
EXCLUDES = ("/usr/share/doc/*", "/usr/share/man/*", "/usr/share/info/*", "/usr/share/locale/*")


def recipe() -> list[str]:
    # essential: no apt in the image (nothing installs packages at run time); merged-usr done by the
    # hook rather than by the usrmerge package, which would pull in perl (about 50 MB).
    args = [
        "--variant=essential",
        f"--include={','.join(PACKAGES)}",
        "--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr",
    ]
    args += [f"--dpkgopt=path-exclude={path}" for path in EXCLUDES]
    args += ["--dpkgopt=path-include=/usr/share/doc/*/copyright"]  # licences stay
    args += [f"--customize-hook={hook}" for hook in HOOKS]
    return args


def reference() -> str:
    digest = hashlib.sha256("\n".join([SUITE, *recipe()]).encode()).hexdigest()[:12]
    return f"localhost/vidpipe-base:{SUITE}-py311-{digest}"


def ensure_base(podman: Podman) -> str:
    """The local base image's reference, built (about a minute) only when the recipe changed."""
    ref = reference()
    if podman.image_exists(ref):
        return ref
    tarball = CACHE / "images" / f"{ref.rsplit(':', 1)[1]}.tar"
    if not tarball.exists():
        tarball.parent.mkdir(parents=True, exist_ok=True)
        partial = tarball.with_suffix(".partial")
        print(f"building the Debian {SUITE} Python base with mmdebstrap -> {tarball}", file=sys.stderr)
        subprocess.run(["mmdebstrap", "--quiet", "--format=tar", *recipe(), SUITE, str(partial)], check=True)
        partial.rename(tarball)
    podman.run("import", "--change", 'CMD ["python3"]', str(tarball), ref)
    return ref
