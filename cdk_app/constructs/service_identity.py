"""One Kubernetes ServiceAccount bound to one IAM role through EKS Pod Identity."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import ArnFormat, Aws, Stack
from aws_cdk import aws_eks_v2 as eks
from aws_cdk import aws_iam as iam
from constructs import Construct, IDependable


def pod_identity_trust(cluster: eks.Cluster, namespace: str, service_account: str) -> iam.IPrincipal:
    """pods.eks.amazonaws.com, for this account, this cluster and this one ServiceAccount only.

    - aws:SourceAccount / aws:SourceArn: the confused-deputy guard. The source is this cluster, named by its
      ARN or by the ARN of one of its pod identity associations (podidentityassociation/<cluster>/<id>);
      either form is accepted, nothing outside this cluster is.
    - the session tags EKS Pod Identity always sets (eks-cluster-arn, kubernetes-namespace,
      kubernetes-service-account): a second association in the account, or another ServiceAccount of this
      cluster, cannot borrow the role.
    """
    associations = Stack.of(cluster).format_arn(
        service="eks",
        resource="podidentityassociation",
        resource_name=f"{cluster.cluster_name}/*",
        arn_format=ArnFormat.SLASH_RESOURCE_NAME,
    )
    return iam.SessionTagsPrincipal(
        iam.ServicePrincipal("pods.eks.amazonaws.com").with_conditions(
            {
                "StringEquals": {
                    "aws:SourceAccount": Aws.ACCOUNT_ID,
                    "aws:RequestTag/eks-cluster-arn": cluster.cluster_arn,
                    "aws:RequestTag/kubernetes-namespace": namespace,
                    "aws:RequestTag/kubernetes-service-account": service_account,
                },
                "ArnLike": {"aws:SourceArn": [cluster.cluster_arn, associations]},
            }
        )
    )


class ServiceIdentity(Construct):
    """ServiceAccount + IAM role (trusting pods.eks.amazonaws.com for exactly this ServiceAccount of this
    cluster: pod_identity_trust) + pod identity association.

    Built by hand rather than with `cluster.add_service_account(identity_type=POD_IDENTITY)`:
    that one also writes the IRSA `eks.amazonaws.com/role-arn` annotation, so pods would get
    web-identity variables for a role whose trust policy has no OIDC provider, and the SDKs try
    web identity before the Pod Identity container endpoint.
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        cluster: eks.Cluster,
        name: str,
        namespace: str,
        statements: Sequence[iam.PolicyStatement],
        after: Sequence[IDependable] = (),
    ) -> None:
        super().__init__(scope, id)
        self.name = name
        self.namespace = namespace
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=pod_identity_trust(cluster, namespace, name),
            description=f"EKS Pod Identity for {namespace}/{name}",
        )
        self.policy = iam.Policy(self, "Policy", statements=list(statements))
        self.policy.attach_to_role(self.role)
        self.manifest = eks.KubernetesManifest(
            self,
            "ServiceAccount",
            cluster=cluster,
            overwrite=True,
            manifest=[
                {
                    "apiVersion": "v1",
                    "kind": "ServiceAccount",
                    "metadata": {
                        "name": name,
                        "namespace": namespace,
                        "labels": {"app.kubernetes.io/part-of": "vidpipe", "app.kubernetes.io/name": name},
                    },
                }
            ],
        )
        for dependency in after:
            self.manifest.node.add_dependency(dependency)
        agent = cluster.eks_pod_identity_agent  # creates the agent add-on once per cluster
        self.association = eks.CfnPodIdentityAssociation(
            self,
            "Association",
            cluster_name=cluster.cluster_name,
            namespace=namespace,
            service_account=name,
            role_arn=self.role.role_arn,
        )
        if agent is not None:
            self.association.node.add_dependency(agent)
        # Pods must not start before their credentials exist.
        self.manifest.node.add_dependency(self.association)
        self.manifest.node.add_dependency(self.policy)

    @property
    def role_arn(self) -> str:
        return self.role.role_arn
