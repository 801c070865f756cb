"""Validate synthesized manifests: built-in kinds against Kubernetes 1.36 (kubernetes-validate, strict),
KEDA kinds against the vendored CRD schema with unknown fields rejected.

    python -m cdk8s_app.validate dist/            # every *.k8s.yaml in the folder
    python -m cdk8s_app.validate a.yaml b.yaml

Exit status 1 when any object fails, with one line per problem naming file, kind and name.
"""

from __future__ import annotations

import argparse
import copy
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

from . import KUBERNETES_VERSION  # the cluster's minor: one number for charts and cluster

CRD_FILE = Path(__file__).resolve().parent / "crds" / "keda-v2.16-minimal.yaml"

# The CRD leaves metadata as a bare object (the API server checks it); check what charts write to it.
_DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
METADATA_SCHEMA = {
    "type": "object",
    "required": ["name"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "pattern": _DNS_SUBDOMAIN, "maxLength": 253},
        "namespace": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "maxLength": 63},
        "labels": _STRING_MAP,
        "annotations": _STRING_MAP,
    },
}


@dataclass(frozen=True)
class Problem:
    source: str
    kind: str
    name: str
    message: str

    def __str__(self) -> str:
        return f"{self.source}: {self.kind}/{self.name}: {self.message}"


def strict_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """The CRD schema with additionalProperties: false wherever properties are listed.

    The API server prunes unknown fields of a structural schema silently; failing on them here
    catches a misspelt field that would otherwise vanish on apply.
    """
    schema = copy.deepcopy(schema)

    def visit(node: Any) -> None:
        if isinstance(node, dict):
            if (
                node.get("type") == "object"
                and "properties" in node
                and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")
            ):
                node["additionalProperties"] = False
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    visit(schema)
    schema["properties"]["metadata"] = METADATA_SCHEMA
    schema["required"] = sorted({*schema.get("required", []), "apiVersion", "kind", "metadata", "spec"})
    return schema


@lru_cache(maxsize=1)
def crd_validators(crd_file: Path = CRD_FILE) -> dict[tuple[str, str], jsonschema.protocols.Validator]:
    """(apiVersion, kind) -> a validator for every served version in the CRD file."""
    validators = {}
    for crd in yaml.safe_load_all(crd_file.read_text()):
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            schema = strict_schema(version["schema"]["openAPIV3Schema"])
            cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
            cls.check_schema(schema)
            validators[(f"{group}/{version['name']}", kind)] = cls(schema)
    return validators


def validate_object(obj: dict[str, Any], source: str = "<object>") -> list[Problem]:
    kind = obj.get("kind", "?")
    name = (obj.get("metadata") or {}).get("name", "?")
    validator = crd_validators().get((obj.get("apiVersion", ""), kind))
    if validator is not None:
        return [
            Problem(source, kind, name, f"{'/'.join(str(p) for p in error.absolute_path) or '(root)'}: {error.message}")
            for error in sorted(validator.iter_errors(obj), key=lambda e: list(e.absolute_path))
        ]
    if obj.get("apiVersion", "").endswith(".keda.sh/v1alpha1") or obj.get("apiVersion") == "keda.sh/v1alpha1":
        return [Problem(source, kind, name, "KEDA kind without a vendored schema (add it to the CRD file)")]
    try:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        path = "/".join(str(p) for p in exc.path) or "(root)"
        return [Problem(source, kind, name, f"{path}: {exc.message}")]
    except kubernetes_validate.SchemaNotFoundError:
        return [Problem(source, kind, name, f"no Kubernetes {KUBERNETES_VERSION} schema for {obj.get('apiVersion')}")]
    return []


def manifest_files(paths: Iterable[str | Path]) -> list[Path]:
    files: list[Path] = []
    for path in map(Path, paths):
        files.extend(sorted(path.glob("*.k8s.yaml")) if path.is_dir() else [path])
    return files


def load_objects(files: Iterable[Path]) -> list[tuple[str, dict[str, Any]]]:
    return [(str(f), doc) for f in files for doc in yaml.safe_load_all(f.read_text()) if doc]


def validate_objects(objects: Iterable[tuple[str, dict[str, Any]]]) -> list[Problem]:
    return [problem for source, obj in objects for problem in validate_object(obj, source)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", help="manifest files or folders of *.k8s.yaml")
    args = parser.parse_args(argv)
    files = manifest_files(args.paths)
    objects = load_objects(files)
    if not objects:
        print(f"error: no Kubernetes objects found in {', '.join(args.paths)}", file=sys.stderr)
        return 1
    problems = validate_objects(objects)
    for problem in problems:
        print(problem, file=sys.stderr)
    keda = sum(1 for _, o in objects if o.get("apiVersion", "").startswith("keda.sh/"))
    status = "FAILED" if problems else "ok"
    print(
        f"{status}: {len(objects)} objects in {len(files)} files ({len(objects) - keda} Kubernetes {KUBERNETES_VERSION}"
        f" strict, {keda} KEDA CRD schema), {len(problems)} problem(s)"
    )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
