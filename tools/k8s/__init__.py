"""A local Kubernetes control plane built from source for the charts' tests (make k8s-deps)."""
