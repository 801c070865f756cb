"""The packages import each other one way only: the contract at the bottom, the services on it (never on each
other), the deploy model on those, the charts' building blocks on the deploy model, each service's deploy unit
(its room) on the building blocks, the CDK app on top of them, and the local harness (tools/, then bench/) on
top. The rooms reach the charts and the CDK app through the registry (vidpipe_deploy.registry), by path. No arrow points up and no circle closes, between packages or between
the CDK app's own modules, TYPE_CHECKING imports included (they are where circles hide)."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Top-level package -> its folder, lowest layer first. A package may import only the ones before it
# (services: the contract and nothing else of ours).
LAYERS: list[tuple[str, ...]] = [
    ("vidpipe",),
    ("frame_publisher", "consumer_service", "inference_service", "analytics_service"),
    ("vidpipe_deploy",),
    ("cdk8s_app",),
    ("rooms",),  # each service's deploy unit, services/<folder>/deploy.py
    ("cdk_app",),
    ("tools",),
    ("bench",),
]
FOLDERS = {
    "vidpipe": ROOT / "services" / "shared" / "vidpipe",
    "frame_publisher": ROOT / "services" / "frame-publisher" / "frame_publisher",
    "consumer_service": ROOT / "services" / "consumer-service" / "consumer_service",
    "inference_service": ROOT / "services" / "inference-service" / "inference_service",
    "analytics_service": ROOT / "services" / "analytics-service" / "analytics_service",
    "vidpipe_deploy": ROOT / "services" / "deploy" / "vidpipe_deploy",
    "cdk8s_app": ROOT / "cdk8s_app",
    "rooms": ROOT / "services",
    "cdk_app": ROOT / "cdk_app",
    "tools": ROOT / "tools",
    "bench": ROOT / "bench",
}
RANK = {package: rank for rank, layer in enumerate(LAYERS) for package in layer}
GENERATED = ("cdk8s_app/imports",)


def _modules(package: str) -> dict[str, Path]:
    if package == "rooms":
        return {f"rooms.{p.parent.name}": p for p in sorted((ROOT / "services").glob("*/deploy.py"))}
    folder = FOLDERS[package]
    found = {}
    for path in sorted(folder.rglob("*.py")):
        if any(part in str(path) for part in GENERATED) or "build" in path.relative_to(folder).parts:
            continue
        parts = [package, *path.relative_to(folder).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _imports(module: str, path: Path) -> set[str]:
    """Every module this one names in an import statement, anywhere in the file, resolved to absolute names."""
    is_package = path.name == "__init__.py"
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                prefix = ".".join([*base, *([node.module] if node.module else [])])
            else:
                prefix = node.module or ""
            names.add(prefix)
            names.update(f"{prefix}.{alias.name}" for alias in node.names)
    return names


def _graph() -> dict[str, set[str]]:
    modules = {name: path for package in FOLDERS for name, path in _modules(package).items()}
    assert len([m for m in modules if m.startswith("rooms.")]) >= 4, "every service has its room"
    graph: dict[str, set[str]] = defaultdict(set)
    for name, path in modules.items():
        graph[name] |= {target for target in _imports(name, path) if target in modules and target != name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one member (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_package_imports_one_above_it_or_beside_it():
    upward = sorted(
        f"{source} -> {target}"
        for source, targets in _graph().items()
        for target in targets
        if (s := source.split(".")[0]) != (t := target.split(".")[0]) and RANK[t] >= RANK[s]
    )
    assert not upward, (
        "imports against the layers (" + " < ".join("/".join(layer) for layer in LAYERS) + "):\n" + ("\n".join(upward))
    )


def test_no_import_circle_between_modules():
    assert not _cycles(_graph()), _cycles(_graph())


def test_the_checker_sees_a_circle_and_an_upward_arrow():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _imports("cdk_app.nag", ROOT / "cdk_app" / "nag.py") >= {"aws_cdk"}
    relative = _imports("cdk_app.stacks.data", ROOT / "cdk_app" / "stacks" / "data.py")
    assert "cdk_app.nag" in relative and "cdk_app.stacks.base" in relative
