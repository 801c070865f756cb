"""podman with the project's own configuration, kept under .cache/containers (never the machine's).

What this machine needs, and why: crun refuses its cgroup layout (runc works); root here cannot raise
rlimits, so the containers' ulimits are set explicitly; cgroupfs because no systemd runs here.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tools.paths import CACHE

CONFIG_DIR = CACHE / "containers"
CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
log_driver = "k8s-file"

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
"""
STORAGE_CONF = """\
[storage]
driver = "overlay"
graphroot = "{root}/storage"
runroot = "{root}/run"
"""
TOOLS = ("podman", "runc", "mmdebstrap")


class EngineMissing(RuntimeError):
    pass


@dataclass(frozen=True)
class Podman:
    config_dir: Path = CONFIG_DIR

    def __post_init__(self) -> None:
        missing = [tool for tool in TOOLS if shutil.which(tool) is None]
        if missing:
            raise EngineMissing(f"{', '.join(missing)} not found: run `make container-deps` (Debian packages)")
        self.config_dir.mkdir(parents=True, exist_ok=True)
        (self.config_dir / "containers.conf").write_text(CONTAINERS_CONF)
        (self.config_dir / "storage.conf").write_text(STORAGE_CONF.format(root=self.config_dir.resolve()))

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "CONTAINERS_CONF": str(self.config_dir / "containers.conf"),
            "CONTAINERS_STORAGE_CONF": str(self.config_dir / "storage.conf"),
        }

    def command(self, *args: str) -> list[str]:
        return ["podman", *args]

    def run(
        self,
        *args: str,
        check: bool = True,
        capture: bool = True,
        timeout: float | None = None,
        input: bytes | None = None,
    ) -> subprocess.CompletedProcess:
        result = subprocess.run(self.command(*args), env=self.env, capture_output=capture, timeout=timeout, input=input)
        if check and result.returncode != 0:
            detail = (result.stderr or b"").decode(errors="replace")[-3000:] if capture else ""
            raise RuntimeError(f"podman {' '.join(args[:3])} ... exited {result.returncode}\n{detail}")
        return result

    def image_exists(self, reference: str) -> bool:
        return self.run("image", "exists", reference, check=False).returncode == 0

    def image_size(self, reference: str) -> int:
        return int(json.loads(self.run("image", "inspect", reference).stdout)[0]["Size"])
