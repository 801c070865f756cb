"""The three service images, built from services/ by `cdk deploy` and pushed to the bootstrap ECR repo."""
from __future__ import annotations

from pathlib import Path

from aws_cdk import aws_ecr_assets as ecr_assets
from constructs import Construct

# Service folder under services/ -> construct id. One Dockerfile (services/Dockerfile) builds each,
# with services/ as its context and the folder as the SERVICE build argument.
SERVICES = {"frame-publisher": "Publisher", "consumer-service": "Consumer", "inference-service": "Inference"}
DOCKERFILE = "Dockerfile"

# Never part of an image: caches, tests, local outputs (the asset hash ignores them too).
_EXCLUDE = ["**/__pycache__", "**/*.pyc", "**/.pytest_cache", "**/.mypy_cache", "**/.ruff_cache", "**/*.egg-info",
            "**/.venv", "**/tests", "**/*.onnx", "**/*.mp4", "**/.DS_Store"]


class ServiceImages(Construct):
    def __init__(self, scope: Construct, id: str, *, services_dir: Path) -> None:
        super().__init__(scope, id)
        self.assets: dict[str, ecr_assets.DockerImageAsset] = {}
        dockerfile = services_dir / DOCKERFILE
        if not dockerfile.is_file():
            raise FileNotFoundError(f"{dockerfile} is missing: the service images cannot be built")
        for folder, construct_id in SERVICES.items():
            if not (services_dir / folder / "pyproject.toml").is_file():
                raise FileNotFoundError(f"{services_dir / folder}/pyproject.toml is missing: the {folder} image cannot be built")
            # Each image's context leaves the other services out, so a change to one rebuilds only its image.
            others = [other for other in SERVICES if other != folder]
            self.assets[folder] = ecr_assets.DockerImageAsset(
                self,
                construct_id,
                directory=str(services_dir),
                file=DOCKERFILE,
                build_args={"SERVICE": folder},
                platform=ecr_assets.Platform.LINUX_AMD64,
                exclude=_EXCLUDE + others,
                display_name=f"vidpipe {folder}",
            )

    @property
    def publisher(self) -> str:
        return self.assets["frame-publisher"].image_uri

    @property
    def consumer(self) -> str:
        return self.assets["consumer-service"].image_uri

    @property
    def inference(self) -> str:
        return self.assets["inference-service"].image_uri
