"""The deploy model: what the platform deploys, declared once, read by the CDK app (cdk_app/) and the
Kubernetes charts (cdk8s_app/) alike.

- `facts`: names, ports, prefixes, output keys and the validators of configuration both sides apply;
- `units`: one `ServiceUnit` per service (identity, grants as data, ports, node pool) and the KEDA unit;
- `sizing`: the committed throughput figures the autoscaling thresholds and the inference pod derive from.

Imports neither aws_cdk nor cdk8s: it loads in a plain Python process and in pydantic tests.
"""
