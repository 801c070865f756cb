"""Building blocks shared by every workload: labels, hardened pod/container specs, probes, Deployments.

Typed L1 constructs (cdk8s-plus-36's generated `k8s` module) keep the output exactly what is written
here, which is what the strict Kubernetes 1.36 schema check sees.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cdk8s_plus_36 import k8s
from constructs import Construct

from vidpipe_deploy.facts import PART_OF  # noqa: E402  (re-exported)
from vidpipe_deploy.wiring import Resources

# The services' images run as this uid/gid (services/*/Dockerfile: USER 10001:10001).
APP_UID = 10001
TMP_VOLUME = "tmp"


def app_labels(name: str, component: str, instance: str | None = None) -> dict[str, str]:
    labels = {
        "app.kubernetes.io/name": name,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": PART_OF,
    }
    if instance:
        labels["app.kubernetes.io/instance"] = instance
    return labels


def selector_labels(labels: dict[str, str]) -> dict[str, str]:
    """The immutable subset used in selectors (name + instance): component/part-of may change."""
    return {k: v for k, v in labels.items() if k in ("app.kubernetes.io/name", "app.kubernetes.io/instance")}


def quantity(value: str) -> k8s.Quantity:
    return k8s.Quantity.from_string(value)


def port(value: int | str) -> k8s.IntOrString:
    return k8s.IntOrString.from_number(value) if isinstance(value, int) else k8s.IntOrString.from_string(value)


def resources(spec: Resources) -> k8s.ResourceRequirements:
    return k8s.ResourceRequirements(
        requests={"cpu": quantity(spec.cpu_request), "memory": quantity(spec.memory_request)},
        limits={"cpu": quantity(spec.cpu_limit), "memory": quantity(spec.memory_limit)},
    )


@dataclass(frozen=True)
class HealthProbes:
    """HTTP health endpoints a service serves on one port (its ops port where the API has its own)."""

    port: int
    liveness_path: str = "/healthz"
    readiness_path: str = "/readyz"
    # startup_seconds bounds how long start-up (e.g. a model download) may take before liveness applies.
    startup_seconds: int = 60
    period_seconds: int = 10

    def startup(self) -> k8s.Probe:
        return k8s.Probe(
            http_get=k8s.HttpGetAction(path=self.liveness_path, port=port(self.port)),
            period_seconds=5,
            failure_threshold=max(1, self.startup_seconds // 5),
            timeout_seconds=2,
        )

    def readiness(self) -> k8s.Probe:
        return k8s.Probe(
            http_get=k8s.HttpGetAction(path=self.readiness_path, port=port(self.port)),
            period_seconds=self.period_seconds,
            failure_threshold=3,
            timeout_seconds=2,
        )

    def liveness(self) -> k8s.Probe:
        return k8s.Probe(
            http_get=k8s.HttpGetAction(path=self.liveness_path, port=port(self.port)),
            period_seconds=self.period_seconds,
            failure_threshold=3,
            timeout_seconds=3,
        )


def container_security() -> k8s.SecurityContext:
    return k8s.SecurityContext(
        run_as_non_root=True,
        run_as_user=APP_UID,
        run_as_group=APP_UID,
        read_only_root_filesystem=True,
        allow_privilege_escalation=False,
        privileged=False,
        capabilities=k8s.Capabilities(drop=["ALL"]),
        seccomp_profile=k8s.SeccompProfile(type="RuntimeDefault"),
    )


def pod_security() -> k8s.PodSecurityContext:
    return k8s.PodSecurityContext(
        run_as_non_root=True,
        run_as_user=APP_UID,
        run_as_group=APP_UID,
        fs_group=APP_UID,
        seccomp_profile=k8s.SeccompProfile(type="RuntimeDefault"),
    )


def prometheus_annotations(health_port: int) -> dict[str, str]:
    """The conventional scrape annotations (Prometheus' kubernetes_sd relabelling): /metrics on the ops port."""
    return {"prometheus.io/scrape": "true", "prometheus.io/port": str(health_port), "prometheus.io/path": "/metrics"}


# checkov's inline suppressions (annotation checkov.io/skip<n>: <check id>=<reason>; no "=" in a reason).
# Only for the services' own images, which the CDK app pushes to its bootstrap ECR repository.
ASSET_IMAGE_CHECKOV_SKIPS = {
    "CKV_K8S_43": (
        "CDK image assets are tagged with the hash of their build context in the bootstrap ECR repository, "
        "whose tags are immutable, so the tag pins one image; the digest exists only after cdk deploy pushes it"
    ),
    "CKV_K8S_15": "The tag is immutable (see CKV_K8S_43): IfNotPresent pulls the same image as Always, without "
    "a registry round trip on every start",
}


def checkov_skip_annotations(skips: dict[str, str]) -> dict[str, str]:
    for check_id, reason in skips.items():
        if "=" in reason or not reason.strip():
            raise ValueError(f"{check_id}: a checkov skip reason must be non-empty and hold no '='")
    return {f"checkov.io/skip{i}": f"{check_id}={reason}" for i, (check_id, reason) in enumerate(skips.items(), 1)}


def secret_volume(
    name: str, secret: str, key: str, mount_path: str, file_name: str
) -> tuple[k8s.Volume, k8s.VolumeMount]:
    """One key of a Secret as the read-only file <mount_path>/<file_name> (0440: owner root, group the pod's
    fsGroup, so the non-root user reads it). A missing Secret or key keeps the pod from starting, visibly."""
    volume = k8s.Volume(
        name=name,
        secret=k8s.SecretVolumeSource(
            secret_name=secret, items=[k8s.KeyToPath(key=key, path=file_name)], default_mode=0o440, optional=False
        ),
    )
    return volume, k8s.VolumeMount(name=name, mount_path=mount_path, read_only=True)


def secret_dir_volume(name: str, secret: str, mount_path: str) -> tuple[k8s.Volume, k8s.VolumeMount]:
    """Every key of a Secret as a read-only file under mount_path (0440, group the pod's fsGroup). Optional: the
    pod starts without the Secret, and the kubelet adds, changes and removes the files as the Secret changes
    (never a subPath, which would freeze them), so a reader that opens a file on each use sees the change."""
    volume = k8s.Volume(name=name, secret=k8s.SecretVolumeSource(secret_name=secret, default_mode=0o440, optional=True))
    return volume, k8s.VolumeMount(name=name, mount_path=mount_path, read_only=True)


def tmp_volume(size_limit: str) -> k8s.Volume:
    """The only writable path under a read-only root filesystem."""
    return k8s.Volume(name=TMP_VOLUME, empty_dir=k8s.EmptyDirVolumeSource(size_limit=quantity(size_limit)))


def tmp_mount() -> k8s.VolumeMount:
    return k8s.VolumeMount(name=TMP_VOLUME, mount_path="/tmp")


@dataclass
class ContainerSpec:
    name: str
    image: str
    resources: Resources
    config_maps: list[str]
    ports: dict[str, int]
    probes: HealthProbes | None
    # Literal values only: a secret reaches a container as a mounted file (secret_volume), never a variable.
    env: dict[str, str] = field(default_factory=dict)
    command: list[str] | None = None
    args: list[str] | None = None
    tcp_ready_port: int | None = None  # for servers without an HTTP health endpoint
    mounts: list[k8s.VolumeMount] = field(default_factory=list)  # besides /tmp

    def _readiness(self) -> k8s.Probe | None:
        if self.probes:
            return self.probes.readiness()
        if self.tcp_ready_port:
            return k8s.Probe(tcp_socket=k8s.TcpSocketAction(port=port(self.tcp_ready_port)), period_seconds=10)
        return None

    def build(self) -> k8s.Container:
        return k8s.Container(
            name=self.name,
            image=self.image,
            image_pull_policy="IfNotPresent",
            command=self.command,
            args=self.args,
            env_from=[k8s.EnvFromSource(config_map_ref=k8s.ConfigMapEnvSource(name=cm)) for cm in self.config_maps]
            or None,
            env=[k8s.EnvVar(name=k, value=v) for k, v in self.env.items()] or None,
            ports=[k8s.ContainerPort(name=n, container_port=p, protocol="TCP") for n, p in self.ports.items()] or None,
            resources=resources(self.resources),
            security_context=container_security(),
            volume_mounts=[tmp_mount(), *self.mounts],
            startup_probe=self.probes.startup() if self.probes else None,
            readiness_probe=self._readiness(),
            liveness_probe=self.probes.liveness() if self.probes else None,
            termination_message_policy="FallbackToLogsOnError",
        )


def zone_spread(labels: dict[str, str]) -> list[k8s.TopologySpreadConstraint]:
    """Spread replicas across zones, then nodes; best effort so a zone outage never blocks scheduling."""
    selector = k8s.LabelSelector(match_labels=selector_labels(labels))
    return [
        k8s.TopologySpreadConstraint(
            max_skew=1,
            topology_key=key,
            when_unsatisfiable="ScheduleAnyway",
            label_selector=selector,
            match_label_keys=["pod-template-hash"],
        )
        for key in ("topology.kubernetes.io/zone", "kubernetes.io/hostname")
    ]


def deployment(
    scope: Construct,
    name: str,
    labels: dict[str, str],
    containers: list[ContainerSpec],
    service_account: str | None,
    tmp_size: str,
    grace_seconds: int,
    node_selector: dict[str, str] | None = None,
    automount_token: bool = False,
    replicas: int | None = None,
    recreate: bool = False,
    volumes: list[k8s.Volume] | None = None,
    pod_annotations: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
) -> k8s.KubeDeployment:
    """A hardened Deployment. replicas=None leaves the count to KEDA's HPA (a fixed count would fight it).
    volumes: besides /tmp; pod_annotations: e.g. a checksum of mounted configuration, so a change rolls the pods."""
    strategy = (
        k8s.DeploymentStrategy(type="Recreate")
        if recreate
        else k8s.DeploymentStrategy(
            type="RollingUpdate",
            rolling_update=k8s.RollingUpdateDeployment(max_surge=port(1), max_unavailable=port(0)),
        )
    )
    return k8s.KubeDeployment(
        scope,
        name,
        metadata=k8s.ObjectMeta(name=name, labels=labels, annotations=annotations or None),
        spec=k8s.DeploymentSpec(
            replicas=replicas,
            revision_history_limit=5,
            selector=k8s.LabelSelector(match_labels=selector_labels(labels)),
            strategy=strategy,
            template=k8s.PodTemplateSpec(
                metadata=k8s.ObjectMeta(labels=labels, annotations=pod_annotations or None),
                spec=k8s.PodSpec(
                    service_account_name=service_account,
                    node_selector=node_selector or None,
                    automount_service_account_token=automount_token,
                    enable_service_links=False,
                    security_context=pod_security(),
                    termination_grace_period_seconds=grace_seconds,
                    topology_spread_constraints=zone_spread(labels),
                    containers=[c.build() for c in containers],
                    volumes=[tmp_volume(tmp_size), *(volumes or [])],
                ),
            ),
        ),
    )


def cluster_ip_service(
    scope: Construct,
    id_: str,
    name: str,
    labels: dict[str, str],
    port_name: str,
    number: int,
    more_ports: dict[str, int] | None = None,
) -> k8s.KubeService:
    """A ClusterIP Service on named container ports of the pods these labels select (one, and more_ports)."""
    ports = {port_name: number, **(more_ports or {})}
    return k8s.KubeService(
        scope,
        id_,
        metadata=k8s.ObjectMeta(name=name, labels=labels),
        spec=k8s.ServiceSpec(
            type="ClusterIP",
            selector=selector_labels(labels),
            ports=[k8s.ServicePort(name=n, port=p, target_port=port(n), protocol="TCP") for n, p in ports.items()],
        ),
    )


def disruption_budget(scope: Construct, name: str, labels: dict[str, str]) -> k8s.KubePodDisruptionBudget:
    """At most one pod down at a time from voluntary disruptions, yet node drains never block at 1 replica."""
    return k8s.KubePodDisruptionBudget(
        scope,
        f"{name}-pdb",
        metadata=k8s.ObjectMeta(name=name, labels=labels),
        spec=k8s.PodDisruptionBudgetSpec(
            max_unavailable=port(1),
            selector=k8s.LabelSelector(match_labels=selector_labels(labels)),
            unhealthy_pod_eviction_policy="AlwaysAllow",
        ),
    )


def config_map_volume(name: str, config_map_name: str, mount_path: str) -> tuple[k8s.Volume, k8s.VolumeMount]:
    """A ConfigMap as read-only files (0444: the non-root user reads them, nobody writes)."""
    volume = k8s.Volume(name=name, config_map=k8s.ConfigMapVolumeSource(name=config_map_name, default_mode=0o444))
    return volume, k8s.VolumeMount(name=name, mount_path=mount_path, read_only=True)


def config_map(
    scope: Construct, name: str, data: dict[str, str], labels: dict[str, str], immutable: bool = False
) -> k8s.KubeConfigMap:
    """immutable: for a ConfigMap named after its content's hash (a change is a new name, never an edit)."""
    return k8s.KubeConfigMap(
        scope,
        f"{name}-cm",
        metadata=k8s.ObjectMeta(name=name, labels=labels),
        data=data,
        immutable=True if immutable else None,
    )


def job(
    scope: Construct,
    name: str,
    labels: dict[str, str],
    container: ContainerSpec,
    service_account: str,
    *,
    tmp_size: str,
    backoff_limit: int,
    ttl_seconds_after_finished: int,
    node_selector: dict[str, str] | None = None,
    automount_token: bool = False,
    volumes: list[k8s.Volume] | None = None,
    annotations: dict[str, str] | None = None,
) -> k8s.KubeJob:
    """A hardened run-once Job (the pod as a Deployment's: non-root, read-only root, no capabilities, seccomp).
    Its pods never restart in place (restartPolicy Never): each failed try is a new pod, with its own log, and
    the Job controller spaces the tries out (10 s, doubling, up to 6 minutes)."""
    return k8s.KubeJob(
        scope,
        name,
        metadata=k8s.ObjectMeta(name=name, labels=labels, annotations=annotations or None),
        spec=k8s.JobSpec(
            backoff_limit=backoff_limit,
            ttl_seconds_after_finished=ttl_seconds_after_finished,
            template=k8s.PodTemplateSpec(
                metadata=k8s.ObjectMeta(labels=labels),
                spec=k8s.PodSpec(
                    restart_policy="Never",
                    service_account_name=service_account,
                    node_selector=node_selector or None,
                    automount_service_account_token=automount_token,
                    enable_service_links=False,
                    security_context=pod_security(),
                    containers=[container.build()],
                    volumes=[tmp_volume(tmp_size), *(volumes or [])],
                ),
            ),
        ),
    )
