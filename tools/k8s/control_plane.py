"""A real Kubernetes control plane on loopback, from binaries built by `make k8s-deps` (tools/k8s/go).

etcd (the version Kubernetes pins), kube-apiserver with its own PKI, static tokens, RBAC, PodSecurity and the
aggregation layer, kube-controller-manager (deployments, replica sets, jobs, disruption budgets, the HPA,
node lifecycle, service accounts, garbage collection) with a credential per controller, kube-scheduler, and kwok's
controller, which plays the kubelets: fake nodes that report Ready and run every pod bound to them (Ready a
second later; a Job's pods then succeed), so pods are created, admitted, scheduled and become Ready as on a cluster, without containers.
KEDA's operator and metrics API server start on demand (start_keda) once its CRDs are there; the API server
reaches the metrics server through an ExternalName Service.

Library use (a pytest session fixture does this)::

    from tools.k8s.control_plane import LocalControlPlane
    with LocalControlPlane(tmp_dir, die_with_parent=True) as cp:
        cp.client.get("Namespace", "default")
        cp.kubectl("apply", "--server-side", "-f", "dist/")
        cp.add_nodes([{"name": "n1", "labels": {...}}])

CLI (from the repo root; Ctrl-C stops it)::

    python -m tools.k8s.control_plane up [--state-dir D]     # prints the kubeconfig to use with kubectl
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import ctypes
import json
import logging
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tools.k8s import pki
from tools.k8s.client import ApiError, KubeClient, wait_for

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".cache" / "k8s"
BIN_DIR = CACHE / "bin"
# Written by make k8s-deps from the Go modules it builds (no network at test time)
KWOK_STAGES = CACHE / "kwok-stages.yaml"
KEDA_CRDS = CACHE / "keda-crds"

KUBERNETES_VERSION = "v1.36.5"
KWOK_VERSION = "v0.8.0"
KEDA_VERSION = "v2.18.0"
CONTROL_PLANE_BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
KEDA_BINARIES = ("keda-operator", "keda-adapter")

SERVICE_CIDR = "10.96.0.0/16"
KEDA_NAMESPACE = "keda"
# The API server dials an aggregated API at <service>.<namespace>.svc; KEDA's certificate names it too.
KEDA_METRICS_SERVICE = "keda-operator-metrics-apiserver"
# Every controller of kube-controller-manager that the charts' objects need, and nothing else (2 cores)
CONTROLLERS = (
    "deployment-controller",
    "replicaset-controller",
    "job-controller",
    "disruption-controller",
    "node-lifecycle-controller",  # lifts the not-ready taint a new node is admitted with, once kwok reports Ready
    "horizontal-pod-autoscaler-controller",
    "garbage-collector-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "root-ca-certificate-publisher-controller",
)

log = logging.getLogger("local_k8s")


class ControlPlaneError(RuntimeError):
    """A component could not be started or did not become ready; the message carries its log tail."""


def missing_binaries(names: Iterable[str] = CONTROL_PLANE_BINARIES, bin_dir: Path = BIN_DIR) -> list[str]:
    """What `make k8s-deps` has not built yet."""
    missing = [name for name in names if not (bin_dir / name).is_file()]
    if "kwok" in names and not KWOK_STAGES.is_file():
        missing.append(str(KWOK_STAGES.relative_to(ROOT)))
    return missing


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _set_pdeathsig() -> None:  # in the child between fork and exec: it dies with the test process
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class Component:
    name: str
    cmd: list[str]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    def start(self, die_with_parent: bool) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as out:
            out.write(f"===== {' '.join(self.cmd)}\n".encode())
            out.flush()
            self.proc = subprocess.Popen(
                self.cmd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **self.env},
                start_new_session=True,
                preexec_fn=_set_pdeathsig if die_with_parent else None,
            )

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 15.0) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None


class LocalControlPlane:
    """One control plane with its state (PKI, tokens, kubeconfigs, etcd data, logs) in state_dir.

    Ports are free loopback ports picked at start. `client` is an admin client (system:masters);
    `kubeconfig` the matching file for kubectl.
    """

    def __init__(
        self,
        state_dir: Path | str | None = None,
        *,
        bin_dir: Path = BIN_DIR,
        die_with_parent: bool = False,
        hpa_sync_period: str = "3s",
        pod_start_seconds: float = 1.0,
    ):
        self.state_dir = Path(state_dir or tempfile.mkdtemp(prefix="k8s-")).resolve()
        self.bin_dir = bin_dir
        self.die_with_parent = die_with_parent
        self.hpa_sync_period = hpa_sync_period
        self.pod_start_seconds = pod_start_seconds
        self.pki_dir = self.state_dir / "pki"
        self.log_dir = self.state_dir / "logs"
        self.components: dict[str, Component] = {}
        self.tokens: dict[str, str] = {}
        self.apiserver_port = 0
        self.etcd_port = 0
        self._client: KubeClient | None = None
        self.start_seconds: dict[str, float] = {}

    # ----- paths and clients
    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.apiserver_port}"

    @property
    def ca_file(self) -> Path:
        return self.pki_dir / "ca.crt"

    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / "admin.kubeconfig"

    @property
    def client(self) -> KubeClient:
        if self._client is None:
            raise ControlPlaneError("the control plane is not started")
        return self._client

    def client_for(self, user: str) -> KubeClient:
        return KubeClient(self.server, self.tokens[user], self.ca_file)

    def log_path(self, component: str) -> Path:
        return self.log_dir / f"{component}.log"

    def _bin(self, name: str) -> str:
        path = self.bin_dir / name
        if not path.is_file():
            raise ControlPlaneError(f"{path} is missing: run `make k8s-deps`")
        return str(path)

    # ----- set-up
    def _write_pki(self) -> None:
        self.pki_dir.mkdir(parents=True, exist_ok=True)
        ca = pki.make_ca(self.pki_dir, "ca", "vidpipe-local-ca")
        pki.make_leaf(
            self.pki_dir,
            "apiserver",
            ca,
            "kube-apiserver",
            hosts=("127.0.0.1", "localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "10.96.0.1"),
            server=True,
        )
        front_proxy_ca = pki.make_ca(self.pki_dir, "front-proxy-ca", "front-proxy-ca")
        pki.make_leaf(self.pki_dir, "front-proxy-client", front_proxy_ca, "front-proxy-client", client=True)
        pki.make_service_account_keys(self.pki_dir)
        # KEDA's metrics server (served to the API server) and its mutual-TLS link to the operator
        keda = self.pki_dir / "keda"
        keda.mkdir(exist_ok=True)
        shutil.copy(ca.cert, keda / "ca.crt")
        pair = pki.make_leaf(
            keda,
            "tls",
            ca,
            "keda",
            hosts=(
                "127.0.0.1",
                "localhost",
                f"{KEDA_METRICS_SERVICE}.{KEDA_NAMESPACE}.svc",
                f"keda-operator.{KEDA_NAMESPACE}.svc",
            ),
            server=True,
            client=True,
        )
        pair.key.rename(keda / "tls.key")

    def _write_tokens(self) -> None:
        # user -> groups. The controller manager and the scheduler get their bootstrap RBAC identities; the
        # rest act for the cluster's operator (kwok plays every kubelet, KEDA is cluster-wide).
        users = {
            "admin": "system:masters",
            "system:kube-controller-manager": "",
            "system:kube-scheduler": "",
            "kwok": "system:masters",
            "keda": "system:masters",
        }
        lines = []
        for user, groups in users.items():
            token = os.urandom(24).hex()
            self.tokens[user] = token
            lines.append(f'{token},{user},{user},"{groups}"' if groups else f"{token},{user},{user}")
        path = self.state_dir / "tokens.csv"
        path.write_text("\n".join(lines) + "\n")
        path.chmod(0o600)

    def write_kubeconfig(self, user: str, path: Path | None = None) -> Path:
        path = path or self.state_dir / f"{user.replace(':', '-')}.kubeconfig"
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {"name": "local", "cluster": {"server": self.server, "certificate-authority": str(self.ca_file)}}
            ],
            "users": [{"name": user, "user": {"token": self.tokens[user]}}],
            "contexts": [{"name": "local", "context": {"cluster": "local", "user": user}}],
            "current-context": "local",
        }
        path.write_text(json.dumps(config, indent=2) + "\n")  # JSON is YAML
        path.chmod(0o600)
        return path

    # ----- lifecycle
    def start(self, timeout: float = 120.0) -> LocalControlPlane:
        missing = missing_binaries(bin_dir=self.bin_dir)
        if missing:
            raise ControlPlaneError(f"missing: {', '.join(missing)}: run `make k8s-deps`")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._write_pki()
        self._write_tokens()
        try:
            self._start_etcd(timeout)
            self._start_apiserver(timeout)
            self.write_kubeconfig("admin", self.kubeconfig)
            self._start_controller_manager(timeout)
            self._start_scheduler(timeout)
            self._start_kwok(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _launch(self, name: str, cmd: list[str], env: dict[str, str] | None = None) -> Component:
        component = Component(name, cmd, self.log_path(name), dict(env or {}))
        self.components[name] = component
        component.start(self.die_with_parent)
        return component

    def _wait(self, component: Component, what: str, ready: Any, timeout: float) -> None:
        t0 = time.monotonic()
        deadline = t0 + timeout
        while True:
            if not component.running():
                raise ControlPlaneError(
                    f"{component.name} exited (code {component.proc.returncode if component.proc else '?'}); "
                    f"last lines of {component.log_path}:\n{component.log_tail()}"
                )
            try:
                if ready():
                    self.start_seconds[component.name] = time.monotonic() - t0
                    return
            except (OSError, ApiError):
                pass
            if time.monotonic() > deadline:
                raise ControlPlaneError(
                    f"{component.name} was not {what} after {timeout:.0f} s; "
                    f"last lines of {component.log_path}:\n{component.log_tail()}"
                )
            time.sleep(0.2)

    def _start_etcd(self, timeout: float) -> None:
        etcd = self._bin("etcd")
        self.etcd_port, peer = free_port(), free_port()
        client_url, peer_url = f"http://127.0.0.1:{self.etcd_port}", f"http://127.0.0.1:{peer}"
        component = self._launch(
            "etcd",
            [
                etcd,
                "--name=local",
                f"--data-dir={self.state_dir / 'etcd'}",
                f"--listen-client-urls={client_url}",
                f"--advertise-client-urls={client_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=local={peer_url}",
                "--log-level=warn",
                "--unsafe-no-fsync",  # the data lives as long as the test session
            ],
        )

        def healthy() -> bool:
            with urllib.request.urlopen(f"{client_url}/health", timeout=1) as resp:
                return b'"true"' in resp.read()

        self._wait(component, "healthy", healthy, timeout)

    def _start_apiserver(self, timeout: float) -> None:
        self.apiserver_port = free_port()
        p = self.pki_dir
        component = self._launch(
            "kube-apiserver",
            [
                self._bin("kube-apiserver"),
                f"--etcd-servers=http://127.0.0.1:{self.etcd_port}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={self.apiserver_port}",
                f"--tls-cert-file={p / 'apiserver.crt'}",
                f"--tls-private-key-file={p / 'apiserver.key'}",
                f"--client-ca-file={p / 'ca.crt'}",
                f"--token-auth-file={self.state_dir / 'tokens.csv'}",
                "--authorization-mode=RBAC",
                "--anonymous-auth=false",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={p / 'sa.pub'}",
                f"--service-account-signing-key-file={p / 'sa.key'}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                # PodSecurity (on by default) named so that turning it off is a visible change; privileged
                # containers allowed by the server, as on EKS, so that PodSecurity is what refuses them
                "--enable-admission-plugins=NamespaceLifecycle,ServiceAccount,PodSecurity,LimitRanger,"
                "DefaultTolerationSeconds,ResourceQuota,MutatingAdmissionWebhook,ValidatingAdmissionWebhook",
                "--allow-privileged=true",
                # The aggregation layer, for KEDA's external metrics API
                f"--requestheader-client-ca-file={p / 'front-proxy-ca.crt'}",
                "--requestheader-allowed-names=front-proxy-client",
                "--requestheader-username-headers=X-Remote-User",
                "--requestheader-group-headers=X-Remote-Group",
                "--requestheader-extra-headers-prefix=X-Remote-Extra-",
                f"--proxy-client-cert-file={p / 'front-proxy-client.crt'}",
                f"--proxy-client-key-file={p / 'front-proxy-client.key'}",
                # The "kubernetes" Service's endpoints may not be loopback addresses: nothing needs them here
                "--endpoint-reconciler-type=none",
                "--profiling=false",
                "--v=1",
            ],
        )
        self._client = KubeClient(self.server, self.tokens["admin"], self.ca_file, timeout=10)
        client = self._client

        def ready() -> bool:
            client.request("GET", "/readyz")
            return True

        self._wait(component, "ready (/readyz)", ready, timeout)

    def _component_flags(self, user: str) -> list[str]:
        kubeconfig = self.write_kubeconfig(user)
        return [
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--bind-address=127.0.0.1",
            f"--secure-port={free_port()}",
            "--leader-elect=false",
            "--profiling=false",
        ]

    def _healthz(self, component: Component) -> bool:
        port = next(arg.split("=", 1)[1] for arg in component.cmd if arg.startswith("--secure-port="))
        insecure = ssl.create_default_context()
        insecure.check_hostname = False
        insecure.verify_mode = ssl.CERT_NONE  # its self-signed serving certificate; /healthz says only "ok"
        with urllib.request.urlopen(f"https://127.0.0.1:{port}/healthz", context=insecure, timeout=2) as resp:
            return bool(resp.read().strip() == b"ok")

    def _start_controller_manager(self, timeout: float) -> None:
        p = self.pki_dir
        component = self._launch(
            "kube-controller-manager",
            [
                self._bin("kube-controller-manager"),
                *self._component_flags("system:kube-controller-manager"),
                f"--controllers={','.join(CONTROLLERS)}",
                # each controller acts with its own service account's rights (bootstrap RBAC), as in a cluster
                "--use-service-account-credentials=true",
                f"--service-account-private-key-file={p / 'sa.key'}",
                f"--root-ca-file={p / 'ca.crt'}",
                f"--horizontal-pod-autoscaler-sync-period={self.hpa_sync_period}",
                "--node-monitor-period=1s",
                "--v=1",
            ],
        )
        self._wait(component, "healthy", lambda: self._healthz(component), timeout)

    def _start_scheduler(self, timeout: float) -> None:
        component = self._launch(
            "kube-scheduler", [self._bin("kube-scheduler"), *self._component_flags("system:kube-scheduler"), "--v=1"]
        )
        self._wait(component, "healthy", lambda: self._healthz(component), timeout)

    def _kwok_config(self) -> Path:
        """kwok's stages, with a pod taking `pod_start_seconds` from bound to Ready, as a container would: with
        no delay a replacement is Ready before the next eviction of a drain reaches the API server."""
        stages = [stage for stage in yaml.safe_load_all(KWOK_STAGES.read_text()) if stage]
        for stage in stages:
            if stage["metadata"]["name"] == "pod-ready" and self.pod_start_seconds:
                stage["spec"]["delay"] = {"durationMilliseconds": int(self.pod_start_seconds * 1000)}
        path = self.state_dir / "kwok.yaml"
        path.write_text(yaml.safe_dump_all(stages, sort_keys=False))
        return path

    def _start_kwok(self, timeout: float) -> None:
        component = self._launch(
            "kwok",
            [
                self._bin("kwok"),
                f"--kubeconfig={self.write_kubeconfig('kwok')}",
                f"--config={self._kwok_config()}",
                "--manage-all-nodes=false",
                "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
                "--node-ip=127.0.0.1",
                "--cidr=10.244.0.0/16",
            ],
            env={"HOME": str(self.state_dir)},  # kwok reads ~/.kwok/kwok.yaml when present: not the user's
        )
        # kwok has no health endpoint unless it serves one; it is up when it has taken its first node
        time.sleep(0.5)
        if not component.running():
            raise ControlPlaneError(f"kwok exited; last lines of {component.log_path}:\n{component.log_tail()}")

    def add_nodes(self, nodes: Sequence[dict[str, Any]], timeout: float = 60.0) -> list[str]:
        """Create fake nodes (kwok marks them Ready): each {"name", "labels", optional "cpu", "memory", "pods"}."""
        names = []
        for node in nodes:
            name = node["name"]
            labels = {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "type": "kwok",
                **node.get("labels", {}),
            }
            capacity = {
                "cpu": node.get("cpu", "16"),
                "memory": node.get("memory", "64Gi"),
                "pods": node.get("pods", "110"),
            }
            self.client.create(
                {
                    "apiVersion": "v1",
                    "kind": "Node",
                    "metadata": {"name": name, "labels": labels, "annotations": {"kwok.x-k8s.io/node": "fake"}},
                    "status": {"capacity": capacity, "allocatable": capacity},
                }
            )
            names.append(name)

        def all_ready() -> bool:
            for name in names:
                live = self.client.get("Node", name)
                conditions = live.get("status", {}).get("conditions") or []
                if not any(c["type"] == "Ready" and c["status"] == "True" for c in conditions):
                    return False
                if live["spec"].get("taints"):  # node.kubernetes.io/not-ready until the lifecycle controller sees Ready
                    return False
            return True

        wait_for(
            f"nodes {names} Ready and untainted",
            all_ready,
            timeout,
            describe=lambda: self.components["kwok"].log_tail(10),
        )
        return names

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        kubectl = shutil.which("kubectl")
        if not kubectl:
            raise ControlPlaneError("kubectl is not on PATH")
        proc = subprocess.run(
            [kubectl, f"--kubeconfig={self.kubeconfig}", *args], input=input, capture_output=True, text=True
        )
        if check and proc.returncode != 0:
            raise ControlPlaneError(f"kubectl {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
        return proc

    def apply(self, objects: Sequence[dict[str, Any]], field_manager: str) -> subprocess.CompletedProcess[str]:
        """Server-side apply of a list of objects in one kubectl call (a conflict is an error, not forced)."""
        document = yaml.safe_dump_all(objects, sort_keys=False)
        return self.kubectl("apply", "--server-side", f"--field-manager={field_manager}", "-f", "-", input=document)

    def _empty_dir(self, name: str) -> Path:
        path = self.state_dir / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    # ----- KEDA
    def start_keda(self, timeout: float = 120.0) -> None:
        """KEDA's operator and metrics API server (its CRDs must be applied), and the APIService for them."""
        missing = missing_binaries(KEDA_BINARIES, self.bin_dir)
        if missing:
            raise ControlPlaneError(f"missing: {', '.join(missing)}: run `make k8s-deps`")
        client = self.client
        with contextlib.suppress(ApiError):
            client.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": KEDA_NAMESPACE}})
        kubeconfig = self.write_kubeconfig("keda")
        certs = self.pki_dir / "keda"
        grpc_port, adapter_port = free_port(), free_port()
        env = {
            "KUBECONFIG": str(kubeconfig),
            "WATCH_NAMESPACE": "",
            "POD_NAMESPACE": KEDA_NAMESPACE,
            "KEDA_CLUSTER_OBJECT_NAMESPACE": KEDA_NAMESPACE,
            "HOME": str(self.state_dir),
        }
        operator = self._launch(
            "keda-operator",
            [
                self._bin("keda-operator"),
                "--leader-elect=false",
                f"--metrics-bind-address=127.0.0.1:{free_port()}",
                f"--health-probe-bind-address=127.0.0.1:{(probe_port := free_port())}",
                f"--metrics-service-bind-address=127.0.0.1:{grpc_port}",
                f"--cert-dir={certs}",
                "--enable-cert-rotation=false",
                "--enable-webhook-patching=false",
                f"--ca-dir={self._empty_dir('keda-ca')}",  # no extra CAs for scalers
                "--zap-log-level=info",
                "--zap-encoder=console",
            ],
            env=env,
        )

        def operator_ready() -> bool:
            with urllib.request.urlopen(f"http://127.0.0.1:{probe_port}/readyz", timeout=2) as resp:
                return bool(resp.status == 200)

        self._wait(operator, "ready", operator_ready, timeout)
        adapter = self._launch(
            "keda-adapter",
            [
                self._bin("keda-adapter"),
                f"--secure-port={adapter_port}",
                "--bind-address=127.0.0.1",
                f"--cert-dir={certs}",
                f"--tls-cert-file={certs / 'tls.crt'}",
                f"--tls-private-key-file={certs / 'tls.key'}",
                f"--lister-kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                f"--metrics-service-address=127.0.0.1:{grpc_port}",
                f"--metrics-service-grpc-authority=keda-operator.{KEDA_NAMESPACE}.svc",
                f"--port={free_port()}",
                "--zap-log-level=info",
                "--zap-encoder=console",
            ],
            env=env,
        )
        # The API server resolves an APIService's Service to a host: an ExternalName Service names loopback.
        client.apply(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": KEDA_METRICS_SERVICE, "namespace": KEDA_NAMESPACE},
                "spec": {"type": "ExternalName", "externalName": "localhost"},
            },
            "local-control-plane",
        )
        client.apply(
            {
                "apiVersion": "apiregistration.k8s.io/v1",
                "kind": "APIService",
                "metadata": {"name": "v1beta1.external.metrics.k8s.io"},
                "spec": {
                    "group": "external.metrics.k8s.io",
                    "version": "v1beta1",
                    "groupPriorityMinimum": 100,
                    "versionPriority": 100,
                    "service": {"name": KEDA_METRICS_SERVICE, "namespace": KEDA_NAMESPACE, "port": adapter_port},
                    "caBundle": base64.b64encode(self.ca_file.read_bytes()).decode(),
                },
            },
            "local-control-plane",
        )

        def available() -> bool:
            status = client.request(
                "GET", "/apis/apiregistration.k8s.io/v1/apiservices/v1beta1.external.metrics.k8s.io"
            )
            return any(
                c["type"] == "Available" and c["status"] == "True"
                for c in status.get("status", {}).get("conditions", [])
            )

        self._wait(adapter, "serving external.metrics.k8s.io (APIService Available)", available, timeout)

    def stop_keda(self) -> None:
        for name in KEDA_BINARIES:
            component = self.components.pop(name, None)
            if component:
                component.stop()

    def stop(self) -> None:
        for name in reversed(list(self.components)):
            self.components[name].stop()
        self.components.clear()

    def __enter__(self) -> LocalControlPlane:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def logs(self, lines: int = 30) -> str:
        return "\n\n".join(f"--- {name}\n{c.log_tail(lines)}" for name, c in self.components.items())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.k8s.control_plane", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["up"])
    parser.add_argument("--state-dir", default=None)
    parser.add_argument("--keda", action="store_true", help="also apply KEDA's CRDs and start KEDA")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cp = LocalControlPlane(args.state_dir, die_with_parent=True)
    try:
        t0 = time.monotonic()
        cp.start()
        if args.keda:
            cp.kubectl("apply", "--server-side", "-f", str(KEDA_CRDS))
            cp.start_keda()
        print(
            f"control plane {KUBERNETES_VERSION} up in {time.monotonic() - t0:.1f} s: export KUBECONFIG={cp.kubeconfig}"
        )
        print(f"logs: {cp.log_dir}; Ctrl-C stops it")
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    except ControlPlaneError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        cp.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
