"""The default model, uploaded from the local cache (`make model`) to s3://<bucket>/models/."""

from __future__ import annotations

import hashlib
from pathlib import Path

from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_deployment as s3_deployment
from constructs import Construct

from .archive_bucket import MODELS_PREFIX


class ModelMissingError(FileNotFoundError):
    pass


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class ModelArtifact(Construct):
    """Copies <model_dir>/*.onnx (and labels) under models/ at deploy time; objects outlive the stack.

    `prune=False`: models uploaded by hand next to the default one stay.
    """

    def __init__(self, scope: Construct, id: str, *, bucket: s3.IBucket, model_dir: Path, model_file: str) -> None:
        super().__init__(scope, id)
        model = model_dir / model_file
        if not model.is_file():
            raise ModelMissingError(
                f"{model} is missing (context key vidpipe:modelDir / vidpipe:modelFile): "
                "run `make model` first (`make synth` does)"
            )
        self.object_key = MODELS_PREFIX + model_file
        # The pods pin exactly this file (INFERENCE_MODEL_SHA256): another object under the same key is refused.
        self.path = model
        self.sha256 = file_sha256(model)
        self.uri = f"s3://{bucket.bucket_name}/{self.object_key}"
        self.deployment = s3_deployment.BucketDeployment(
            self,
            "Upload",
            destination_bucket=bucket,
            destination_key_prefix=MODELS_PREFIX,
            sources=[s3_deployment.Source.asset(str(model_dir), exclude=["*", "!*.onnx", "!*.labels.txt"])],
            prune=False,
            retain_on_delete=True,
            memory_limit=512,
        )
