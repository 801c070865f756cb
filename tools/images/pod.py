"""Run a Deployment's container with podman as the kubelet would: its image, environment (ConfigMaps,
then env), user, read-only root filesystem, dropped capabilities, no-new-privileges, emptyDir mounts
as size-limited tmpfs, configMap volumes as read-only files from the manifests' ConfigMaps, CPU and
memory limits, and the grace period on SIGTERM.

Only what cannot exist off-cluster is replaced: endpoints (given as overrides) and the ports, each moved
to a free one since every container here shares the host's network; probes follow the move.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from tools.harness.processes import free_port
from tools.images.engine import Podman

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 10**3, "M": 10**6, "G": 10**9}


def bytes_of(quantity: str) -> int:
    number, unit = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", str(quantity)).groups()
    return int(float(number) * _BINARY.get(unit, 1))


def cpus_of(quantity: str) -> float:
    text = str(quantity)
    return int(text[:-1]) / 1000 if text.endswith("m") else float(text)


def load_manifests(folder: Path) -> list[dict[str, Any]]:
    return [doc for path in sorted(folder.glob("*.k8s.yaml")) for doc in yaml.safe_load_all(path.read_text()) if doc]


@dataclass(frozen=True)
class VolumeFile:
    """One file of a configMap volume: its path inside the volume, its bytes and its mode."""

    path: str
    content: bytes
    mode: int


def _volume_path(path: str, where: str) -> str:
    # The API server refuses these too; here they would also write outside the volume's folder.
    parts = PurePosixPath(path).parts
    if not parts or path.startswith("/") or ".." in parts:
        raise ValueError(f"{where}: {path!r} is not a relative path inside the volume")
    return path


def config_map_files(
    volume: dict[str, Any], objects: dict[tuple[str, str], dict[str, Any]], where: str
) -> list[VolumeFile]:
    """The files the kubelet projects from a configMap volume: every key (data and binaryData), or only
    `items` at their paths; each with the item's mode, else defaultMode (0644 by default)."""
    source = volume["configMap"]
    optional = bool(source.get("optional"))
    found = objects.get(("ConfigMap", source["name"]))
    if found is None:
        if optional:
            return []
        # The kubelet leaves the pod in ContainerCreating: a missing ConfigMap is an error here as well.
        raise KeyError(
            f"{where}: volume {volume['name']} needs ConfigMap {source['name']}, which is not in the manifests"
        )
    data = {key: value.encode() for key, value in (found.get("data") or {}).items()}
    data |= {key: base64.b64decode(value) for key, value in (found.get("binaryData") or {}).items()}
    return _project(data, source, f"volume {volume['name']} needs key {{}} of ConfigMap {source['name']}", where)


def secret_files(volume: dict[str, Any], secrets: dict[tuple[str, str], str], where: str) -> list[VolumeFile]:
    """The files the kubelet projects from a secret volume, from the values given for (Secret, key) (the user
    creates those Secrets): `items` at their paths, each with its mode, else defaultMode (0644 by default)."""
    source = volume["secret"]
    name, optional = source["secretName"], bool(source.get("optional"))
    data = {key: value.encode() for (secret, key), value in secrets.items() if secret == name}
    if not data and not optional:
        # The kubelet leaves the pod in ContainerCreating without the Secret.
        raise KeyError(f"{where}: volume {volume['name']} needs Secret {name}")
    return _project(data, source, f"volume {volume['name']} needs key {{}} of Secret {name}", where)


def _project(data: dict[str, bytes], source: dict[str, Any], missing: str, where: str) -> list[VolumeFile]:
    """What the kubelet writes for a configMap or secret volume source: every key, or only `items` at
    their paths; each with the item's mode, else defaultMode (0644 by default). missing: the error for an
    item's key that is not there (unless the source is optional), with {} for the key."""
    default_mode = int(source.get("defaultMode", 0o644))
    if "items" not in source:
        return [VolumeFile(_volume_path(key, where), value, default_mode) for key, value in sorted(data.items())]
    files = []
    for item in source["items"]:
        if item["key"] not in data:
            if source.get("optional"):
                continue
            raise KeyError(f"{where}: {missing.format(item['key'])}")
        files.append(
            VolumeFile(_volume_path(item["path"], where), data[item["key"]], int(item.get("mode", default_mode)))
        )
    return files


@dataclass
class PodContainer:
    """The first container of a Deployment, resolved against the manifests' ConfigMaps (its environment
    and its configMap volumes' files, by volume name)."""

    deployment: str
    container: dict[str, Any]
    pod: dict[str, Any]
    env: dict[str, str]
    volume_files: dict[str, list[VolumeFile]] = field(default_factory=dict)

    @classmethod
    def from_manifests(
        cls, manifests: list[dict[str, Any]], deployment: str, secrets: dict[tuple[str, str], str] | None = None
    ) -> PodContainer:
        """secrets: (Secret name, key) -> value, for env entries from a secretKeyRef and secret volumes (the
        user creates those Secrets; a missing one stops the container, as the kubelet's
        CreateContainerConfigError)."""
        objects = {(doc["kind"], doc["metadata"]["name"]): doc for doc in manifests}
        pod = objects[("Deployment", deployment)]["spec"]["template"]["spec"]
        container = pod["containers"][0]
        env: dict[str, str] = {}
        for source in container.get("envFrom", []):
            env.update(objects[("ConfigMap", source["configMapRef"]["name"])]["data"])
        for item in container.get("env", []):
            if "value" in item:
                env[item["name"]] = item["value"]
                continue
            ref = item.get("valueFrom", {}).get("secretKeyRef")
            if ref is None:
                raise ValueError(f"{deployment}: env {item['name']} has neither a value nor a secretKeyRef")
            found = (secrets or {}).get((ref["name"], ref["key"]))
            if found is None:
                raise KeyError(f"{deployment}: env {item['name']} needs Secret {ref['name']} key {ref['key']}")
            env[item["name"]] = found
        volume_files = {
            volume["name"]: config_map_files(volume, objects, f"{deployment}: volume {volume['name']}")
            for volume in pod.get("volumes", [])
            if "configMap" in volume
        }
        volume_files |= {
            volume["name"]: secret_files(volume, secrets or {}, f"{deployment}: volume {volume['name']}")
            for volume in pod.get("volumes", [])
            if "secret" in volume
        }
        return cls(deployment, container, pod, env, volume_files)

    @property
    def ports(self) -> list[int]:
        return [p["containerPort"] for p in self.container.get("ports", [])]

    def probes(self) -> dict[str, tuple[str, int]]:
        found = {}
        for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
            http = (self.container.get(kind) or {}).get("httpGet")
            if http:
                found[kind] = (http["path"], int(http["port"]))
        return found


@dataclass
class RunningContainer:
    """`podman run` in the foreground: its exit status is the container's, its output a log file."""

    podman: Podman
    spec: PodContainer
    image: str
    name: str
    log_path: Path
    overrides: dict[str, str] = field(default_factory=dict)
    volumes: list[str] = field(default_factory=list)
    entrypoint: list[str] | None = None
    port_map: dict[int, int] = field(default_factory=dict)
    process: subprocess.Popen | None = None

    def __post_init__(self) -> None:
        # Each container port moves to a free host port; env values naming it (INFERENCE_PORT=8080...) follow.
        self.port_map = {port: free_port() for port in self.spec.ports}

    @property
    def environment(self) -> dict[str, str]:
        moved = {str(old): str(new) for old, new in self.port_map.items()}
        env = {key: moved.get(value, value) for key, value in self.spec.env.items()}
        return {**env, **self.overrides}

    def run_args(self) -> list[str]:
        container, pod = self.spec.container, self.spec.pod
        security = {**pod.get("securityContext", {}), **container.get("securityContext", {})}
        args = ["run", "--rm", "--name", self.name, "--network", "host", "--passwd=false", "--pull=never"]
        if "runAsUser" in security:
            args += ["--user", f"{security['runAsUser']}:{security.get('runAsGroup', security['runAsUser'])}"]
        if security.get("readOnlyRootFilesystem"):
            args += ["--read-only", "--read-only-tmpfs=false"]  # writable only where the pod mounts volumes
        if "ALL" in security.get("capabilities", {}).get("drop", []):
            args += ["--cap-drop", "ALL"]
        if security.get("allowPrivilegeEscalation") is False:
            args += ["--security-opt", "no-new-privileges"]
        if security.get("privileged"):
            raise ValueError(f"{self.spec.deployment}: privileged containers are not run here")
        limits = container.get("resources", {}).get("limits", {})
        if "memory" in limits:
            args += ["--memory", str(bytes_of(limits["memory"]))]
        if "cpu" in limits:
            args += ["--cpus", str(cpus_of(limits["cpu"]))]
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        for mount in container.get("volumeMounts", []):
            volume = volumes[mount["name"]]
            if "emptyDir" in volume:
                if mount.get("subPath") or mount.get("subPathExpr"):
                    raise ValueError(f"{self.spec.deployment}: subPath on emptyDir {mount['name']} is not supported")
                size = volume["emptyDir"].get("sizeLimit")
                options = "rw,mode=1777" + (f",size={bytes_of(size)}" if size else "")
                args += ["--tmpfs", f"{mount['mountPath']}:{options}"]
            elif "configMap" in volume or "secret" in volume:
                args += ["--volume", f"{self._config_map_source(mount)}:{mount['mountPath']}:ro"]
            else:
                raise ValueError(
                    f"{self.spec.deployment}: volume {mount['name']} is neither an emptyDir, a configMap nor a secret"
                )
        grace = pod.get("terminationGracePeriodSeconds")
        if grace is not None:
            args += ["--stop-timeout", str(grace)]
        for key, value in sorted(self.environment.items()):
            args += ["--env", f"{key}={value}"]
        for volume in self.volumes:
            args += ["--volume", volume]
        if self.entrypoint:
            args += ["--entrypoint", self.entrypoint[0]]
        args.append(self.image)
        if self.entrypoint:
            args += self.entrypoint[1:]
        else:
            args += container.get("command", []) + container.get("args", [])
        return args

    @property
    def volumes_dir(self) -> Path:
        """Where the configMap volumes' files are written, beside the log (the test's tmp_path)."""
        return self.log_path.parent / f"{self.name}.volumes"

    def _config_map_source(self, mount: dict[str, Any]) -> Path:
        """The host folder (or, with subPath, the file or folder in it) holding the volume's files.

        Always mounted read-only, as the kubelet mounts configMap volumes whatever readOnly says. Plain
        files rather than the kubelet's ..data symlinks: the same paths, bytes and modes.
        """
        if mount.get("subPathExpr"):
            raise ValueError(f"{self.spec.deployment}: subPathExpr on volume {mount['name']} is not supported")
        folder = self.volumes_dir / mount["name"]
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        # As the kubelet does with fsGroup: the files' group is fsGroup and the group may read them.
        fs_group = self.spec.pod.get("securityContext", {}).get("fsGroup")
        for item in self.spec.volume_files[mount["name"]]:
            path = folder / item.path
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(item.content)
            mode = item.mode
            if fs_group is not None:
                mode |= 0o440
                if os.geteuid() == 0:
                    os.chown(path, -1, int(fs_group))
                else:  # no chown without root: readable by all, so the container's user still reads it
                    mode |= 0o444
            path.chmod(mode)
        # Folders as the kubelet makes them, whatever this machine's umask: the container's user enters them.
        for directory in [folder, *(p for p in folder.rglob("*") if p.is_dir())]:
            directory.chmod(0o755)
        if not mount.get("subPath"):
            return folder
        source = folder / _volume_path(mount["subPath"], f"{self.spec.deployment}: subPath of {mount['name']}")
        if not source.exists():
            # The volume is read-only, so the kubelet cannot create the missing path: the container fails.
            raise ValueError(f"{self.spec.deployment}: subPath {mount['subPath']} is not in volume {mount['name']}")
        return source

    def start(self) -> RunningContainer:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.podman.command(*self.run_args()),
                env=self.podman.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def probe_urls(self) -> dict[str, str]:
        return {
            kind: f"http://127.0.0.1:{self.port_map.get(port, port)}{path}"
            for kind, (path, port) in self.spec.probes().items()
        }

    def probe(self, kind: str) -> int:
        try:
            with urllib.request.urlopen(self.probe_urls()[kind], timeout=3) as response:
                return response.status
        except urllib.error.HTTPError as exc:
            return exc.code
        except OSError:
            return 0

    def wait_ready(self, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.running:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}")
            if self.probe("readinessProbe") == 200:
                return
            time.sleep(0.5)
        raise TimeoutError(f"{self.name} not ready after {timeout_s:.0f}s:\n{self.log_tail()}")

    def terminate(self, timeout_s: float | None = None) -> int:
        """SIGTERM, as the kubelet sends it; the container's exit status (SIGKILL after the grace period)."""
        if self.running:
            grace = self.spec.pod.get("terminationGracePeriodSeconds", 30)
            self.podman.run("kill", "--signal", "TERM", self.name, check=False)
            try:
                self.process.wait(timeout_s or grace + 10)
            except subprocess.TimeoutExpired:
                self.podman.run("kill", "--signal", "KILL", self.name, check=False)
                self.process.wait(30)
        return self.process.returncode
