"""Reusable units: each one owns one resource family and its hardening."""

from .archive_bucket import ArchiveBucket
from .kafka_cluster import KafkaArns, KafkaCluster
from .model_artifact import ModelArtifact
from .service_identity import ServiceIdentity
from .service_images import ServiceImages

__all__ = ["ArchiveBucket", "KafkaArns", "KafkaCluster", "ModelArtifact", "ServiceIdentity", "ServiceImages"]
