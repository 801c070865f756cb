"""A small Kubernetes API client (standard library only): JSON in and out, bearer token, the cluster's CA.

Enough for tests that read status, create, patch, evict and watch by polling; objects are plain dicts as
the API serves them. Server-side apply of whole charts goes through kubectl (see LocalControlPlane.apply).
"""

from __future__ import annotations

import json
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

# kind -> (API path prefix, plural, namespaced) for the kinds the charts and the tests touch
RESOURCES: dict[str, tuple[str, str, bool]] = {
    "Namespace": ("/api/v1", "namespaces", False),
    "Node": ("/api/v1", "nodes", False),
    "Pod": ("/api/v1", "pods", True),
    "Service": ("/api/v1", "services", True),
    "ServiceAccount": ("/api/v1", "serviceaccounts", True),
    "ConfigMap": ("/api/v1", "configmaps", True),
    "Secret": ("/api/v1", "secrets", True),
    "Event": ("/api/v1", "events", True),
    "Deployment": ("/apis/apps/v1", "deployments", True),
    "ReplicaSet": ("/apis/apps/v1", "replicasets", True),
    "Job": ("/apis/batch/v1", "jobs", True),
    "PodDisruptionBudget": ("/apis/policy/v1", "poddisruptionbudgets", True),
    "NetworkPolicy": ("/apis/networking.k8s.io/v1", "networkpolicies", True),
    "HorizontalPodAutoscaler": ("/apis/autoscaling/v2", "horizontalpodautoscalers", True),
    "CustomResourceDefinition": ("/apis/apiextensions.k8s.io/v1", "customresourcedefinitions", False),
    "APIService": ("/apis/apiregistration.k8s.io/v1", "apiservices", False),
    "ScaledObject": ("/apis/keda.sh/v1alpha1", "scaledobjects", True),
    "TriggerAuthentication": ("/apis/keda.sh/v1alpha1", "triggerauthentications", True),
}


class ApiError(RuntimeError):
    """The API server refused a request: `status` is the HTTP code, `message` the Status object's message."""

    def __init__(self, method: str, path: str, status: int, body: dict[str, Any]):
        self.status = status
        self.body = body
        self.message = str(body.get("message", body))
        self.reason = str(body.get("reason", ""))
        super().__init__(f"{method} {path}: {status} {self.reason}: {self.message}")


def path_for(kind: str, name: str | None = None, namespace: str | None = None, subresource: str = "") -> str:
    prefix, plural, namespaced = RESOURCES[kind]
    path = prefix
    if namespaced and namespace:
        path += f"/namespaces/{namespace}"
    path += f"/{plural}"
    if name:
        path += f"/{name}"
    if subresource:
        path += f"/{subresource}"
    return path


class KubeClient:
    def __init__(self, server: str, token: str, ca_file: Path | str, timeout: float = 30.0):
        self.server = server.rstrip("/")
        self.token = token
        self.timeout = timeout
        self._ssl = ssl.create_default_context(cafile=str(ca_file))
        self._discovery: dict[str, dict[str, tuple[str, bool]]] = {}

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        params: dict[str, str] | None = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        url = self.server + path + ("?" + urllib.parse.urlencode(params) if params else "")
        data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        req = urllib.request.Request(url, data=data, method=method)
        req.add_header("Authorization", f"Bearer {self.token}")
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(req, context=self._ssl, timeout=self.timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as err:
            raw = err.read()
            try:
                payload = json.loads(raw)
            except ValueError:
                payload = {"message": raw.decode(errors="replace")}
            raise ApiError(method, path, err.code, payload) from None
        try:
            return json.loads(raw) if raw else {}
        except ValueError:  # /readyz and friends answer in plain text
            return {"text": raw.decode(errors="replace")}

    def path_of(self, obj: dict[str, Any], subresource: str = "") -> str:
        """The REST path of any object, its resource found by discovery from apiVersion and kind."""
        api_version, kind, meta = obj["apiVersion"], obj["kind"], obj["metadata"]
        prefix = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
        if prefix not in self._discovery:
            self._discovery[prefix] = {
                r["kind"]: (r["name"], r["namespaced"])
                for r in self.request("GET", prefix)["resources"]
                if "/" not in r["name"]
            }
        if kind not in self._discovery[prefix]:
            raise KeyError(f"{api_version} serves no {kind}")
        plural, namespaced = self._discovery[prefix][kind]
        path = prefix + (f"/namespaces/{meta['namespace']}" if namespaced else "") + f"/{plural}/{meta['name']}"
        return path + (f"/{subresource}" if subresource else "")

    def get_object(self, obj: dict[str, Any]) -> dict[str, Any]:
        """The live version of a manifest's object (any kind)."""
        return self.request("GET", self.path_of(obj))

    # ----- conveniences
    def get(self, kind: str, name: str | None = None, namespace: str | None = None, **params: str) -> dict[str, Any]:
        return self.request("GET", path_for(kind, name, namespace), params=params or None)

    def items(self, kind: str, namespace: str | None = None, **params: str) -> list[dict[str, Any]]:
        return list(self.get(kind, None, namespace, **params).get("items", []))

    def create(self, obj: dict[str, Any], *, dry_run: bool = False, field_validation: str = "Strict") -> dict[str, Any]:
        meta = obj["metadata"]
        params = {"fieldValidation": field_validation}
        if dry_run:
            params["dryRun"] = "All"
        return self.request("POST", path_for(obj["kind"], None, meta.get("namespace")), obj, params=params)

    def patch(
        self, kind: str, name: str, namespace: str | None, patch: dict[str, Any], subresource: str = ""
    ) -> dict[str, Any]:
        return self.request(
            "PATCH",
            path_for(kind, name, namespace, subresource),
            patch,
            content_type="application/strategic-merge-patch+json"
            if RESOURCES[kind][0].startswith(("/api/v1", "/apis/apps", "/apis/policy"))
            else "application/merge-patch+json",
        )

    def apply(self, obj: dict[str, Any], field_manager: str, *, force: bool = True) -> dict[str, Any]:
        """Server-side apply of one object (what `kubectl apply --server-side` sends)."""
        meta = obj["metadata"]
        return self.request(
            "PATCH",
            path_for(obj["kind"], meta["name"], meta.get("namespace")),
            obj,
            params={"fieldManager": field_manager, "force": "true" if force else "false", "fieldValidation": "Strict"},
            content_type="application/apply-patch+yaml",
        )

    def delete(self, kind: str, name: str, namespace: str | None = None) -> None:
        try:
            self.request("DELETE", path_for(kind, name, namespace))
        except ApiError as err:
            if err.status != 404:
                raise

    def evict(self, name: str, namespace: str) -> dict[str, Any]:
        eviction = {
            "apiVersion": "policy/v1",
            "kind": "Eviction",
            "metadata": {"name": name, "namespace": namespace},
        }
        return self.request("POST", path_for("Pod", name, namespace, "eviction"), eviction)


def wait_for(
    what: str,
    probe: Callable[[], T | None],
    timeout: float = 60.0,
    interval: float = 0.25,
    describe: Callable[[], str] | None = None,
) -> T:
    """Poll `probe` until it returns something truthy; raise TimeoutError naming `what` (and `describe()`)."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            extra = f"; {describe()}" if describe else ""
            raise TimeoutError(f"{what}: not within {timeout:.0f} s{extra}")
        time.sleep(interval)
