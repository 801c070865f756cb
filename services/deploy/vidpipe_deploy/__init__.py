"""The deploy model: what the platform deploys, declared once, read by the CDK app (cdk_app/) and the
Kubernetes charts (cdk8s_app/) alike.

- `facts`: names, ports, prefixes, output keys and the validators of configuration both sides apply;
- `units`: one `ServiceUnit` per service (identity, grants as data, ports, node pool) and the KEDA unit;
- `figures`: the committed throughput figures per CPU class (figures.json) and prices (prices.json);
- `sizing`: the inference pod and the autoscaling thresholds per node type, from those figures;
- `plan`: the fleet planner (pods, nodes, brokers, storage and the monthly cost for a number of cameras).

Imports neither aws_cdk nor cdk8s: it loads in a plain Python process and in pydantic tests.
"""
