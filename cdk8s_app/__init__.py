"""Kubernetes workloads as cdk8s charts (see docs/KUBERNETES.md)."""

# The Kubernetes minor the charts are written and validated for: cdk8s-plus-36's `k8s` module, the strict
# schemas in validate.py, the restricted Pod Security label. Equal to the cluster's (cdk_app/config.py
# KUBERNETES_VERSION; tests/infra checks both, and the kubectl layer).
KUBERNETES_VERSION = "1.36"
