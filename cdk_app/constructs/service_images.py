"""The service images, built from services/ by `cdk deploy` and pushed to the bootstrap ECR repo."""

from __future__ import annotations

from pathlib import Path

from aws_cdk import aws_ecr_assets as ecr_assets
from constructs import Construct

from vidpipe_deploy.units import Services

# One Dockerfile (services/Dockerfile) builds each unit's image, with services/ as its context and the
# unit's folder (its name) as the SERVICE build argument.
DOCKERFILE = "Dockerfile"

# Never part of an image: caches, tests, local outputs (the asset hash ignores them too).
_EXCLUDE = [
    "**/__pycache__",
    "**/*.pyc",
    "**/.pytest_cache",
    "**/.mypy_cache",
    "**/.ruff_cache",
    "**/*.egg-info",
    "**/.venv",
    "**/tests",
    "**/*.onnx",
    "**/*.mp4",
    "**/.DS_Store",
    # The deploy model and each service's deploy unit (services/<folder>/deploy.py): read at synth, never
    # shipped, and a change to them rebuilds no image.
    "deploy",
    "*/deploy.py",
]


class ServiceImages(Construct):
    def __init__(self, scope: Construct, id: str, *, services_dir: Path, services: Services) -> None:
        super().__init__(scope, id)
        self.assets: dict[str, ecr_assets.DockerImageAsset] = {}
        folders = {unit.name: unit.image_id for unit in services.all()}
        self.uris = {unit.role: "" for unit in services.all()}
        dockerfile = services_dir / DOCKERFILE
        if not dockerfile.is_file():
            raise FileNotFoundError(f"{dockerfile} is missing: the service images cannot be built")
        for folder, construct_id in folders.items():
            if not (services_dir / folder / "pyproject.toml").is_file():
                raise FileNotFoundError(
                    f"{services_dir / folder}/pyproject.toml is missing: the {folder} image cannot be built"
                )
            # Each image's context leaves the other services out, so a change to one rebuilds only its image.
            others = [other for other in folders if other != folder]
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

        self.uris = {unit.role: self.assets[unit.name].image_uri for unit in services.all()}
        # The URIs are tokens until deploy; the asset hashes are literals that change with the images.
        self.revisions = {unit.role: self.assets[unit.name].asset_hash for unit in services.all()}
