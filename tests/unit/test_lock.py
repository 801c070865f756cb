"""The locks (make lock) keep up with what the packages declare, pin every file by hash, and are what the venv,
the images and the deploy job install. Offline: the locks are compared with requirements.txt and the
pyproject.toml files, never with an index.

A dependency added to, changed in or removed from a pyproject.toml (or requirements.txt) without `make lock`
fails here, naming the package, the lock and what to run.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from vidpipe_deploy.registry import FOLDERS

ROOT = Path(__file__).resolve().parents[2]
SERVICES = FOLDERS  # every deployed service has its image lock
DEV_LOCK = ROOT / "requirements.lock"
# The images' platform (cdk_app/constructs/service_images.py builds linux/amd64 on python:3.11).
IMAGE_ENVIRONMENT = {
    "python_version": "3.11",
    "python_full_version": "3.11.16",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
    "os_name": "posix",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
}


@dataclass
class Pin:
    version: str
    hashes: int = 0
    via: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class Project:
    """A local package: its name, what it declares and how it is built."""

    name: str
    dependencies: tuple[Requirement, ...]
    build_requires: tuple[Requirement, ...]


_PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[^\s;\\]+)")


def parse_lock(text: str) -> dict[str, Pin]:
    """name -> Pin from a `uv pip compile --generate-hashes` lock (annotations included)."""
    pins: dict[str, Pin] = {}
    current: Pin | None = None
    in_via = False
    for line in text.splitlines():
        stripped = line.strip()
        if match := _PIN.match(line):
            # A universal lock may pin one name twice under exclusive markers: the first pin is the one checked.
            current, in_via = pins.setdefault(canonicalize_name(match["name"]), Pin(match["version"])), False
        elif not line.startswith(" ") or current is None:
            current, in_via = None, False  # a comment or blank line ends the entry
        elif stripped.startswith("--hash=sha256:"):
            current.hashes += 1
        elif stripped == "# via":
            in_via = True
        elif stripped.startswith("# via "):
            current.via.add(stripped.removeprefix("# via ").strip())
        elif in_via and stripped.startswith("#   "):
            current.via.add(stripped.removeprefix("#").strip())
    return pins


def load_project(folder: Path, extras: tuple[str, ...] = ()) -> Project:
    data = tomllib.loads((folder / "pyproject.toml").read_text())
    project = data["project"]
    deps = list(project.get("dependencies", []))
    for extra in extras:
        deps += project.get("optional-dependencies", {})[extra]
    build = data.get("build-system", {}).get("requires", [])
    return Project(canonicalize_name(project["name"]), tuple(map(Requirement, deps)), tuple(map(Requirement, build)))


def requirements_file(path: Path) -> tuple[list[Requirement], list[tuple[Path, tuple[str, ...]]]]:
    """Its requirements, and its editable local packages as (folder, extras)."""
    reqs, local = [], []
    for raw in path.read_text().splitlines():
        line = raw.split(" #")[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("-e "):
            target = line.removeprefix("-e ").strip()
            folder, _, extras = target.partition("[")
            local.append(((path.parent / folder).resolve(), tuple(filter(None, extras.rstrip("]").split(",")))))
        else:
            reqs.append(Requirement(line))
    return reqs, local


def lag(
    lock_name: str,
    pins: dict[str, Pin],
    projects: list[Project],
    requirements: Sequence[Requirement] = (),
    requirements_source: str = "-r requirements.txt",
    environment: dict[str, str] | None = None,
) -> list[str]:
    """Where the lock no longer matches the declarations: each problem a sentence naming the package."""
    local = {p.name for p in projects}
    problems = []
    declared: dict[str, set[str]] = {}  # locked name -> who declares it
    wanted = [(req, p.name) for p in projects for req in (*p.dependencies, *p.build_requires)]
    wanted += [(req, requirements_source) for req in requirements]
    for req, owner in wanted:
        name = canonicalize_name(req.name)
        if name in local:
            continue
        if environment is not None and req.marker is not None and not req.marker.evaluate(environment):
            continue
        declared.setdefault(name, set()).add(owner)
        pin = pins.get(name)
        if pin is None:
            problems.append(f"{req.name} ({owner}) is not in {lock_name}: run `make lock`")
        elif not req.specifier.contains(pin.version, prereleases=True):
            problems.append(
                f"{req.name}: {lock_name} pins {pin.version}, {owner} wants {req.specifier}: run `make lock`"
            )
    for name, pin in sorted(pins.items()):
        if pin.hashes == 0:
            problems.append(f"{name}=={pin.version} in {lock_name} has no --hash: run `make lock`")
        for source in sorted(pin.via):
            declaring_owner = source in local or source == requirements_source
            if declaring_owner and source not in declared.get(name, set()):
                problems.append(
                    f"{name} is locked in {lock_name} for {source}, which no longer declares it: run `make lock`"
                )
    return problems


def local_projects() -> dict[str, Project]:
    _, editables = requirements_file(ROOT / "requirements.txt")
    return {str(folder.relative_to(ROOT)): load_project(folder, extras) for folder, extras in editables}


# ---- the pure check itself ----------------------------------------------------------------------------------

LOCK = """\
# This file was autogenerated by uv via the following command:
#    make lock
boto3==1.44.8 \\
    --hash=sha256:aaaa \\
    --hash=sha256:bbbb
    # via
    #   vidpipe
    #   vidpipe-consumer-service
httpx==0.28.1 \\
    --hash=sha256:cccc
    # via vidpipe-consumer-service
pytest==9.2.0 \\
    --hash=sha256:dddd
    # via -r requirements.txt
setuptools==84.2.1 \\
    --hash=sha256:eeee
    # via -r requirements.txt
colorama==0.4.6 ; sys_platform == 'win32' \\
    --hash=sha256:ffff
    # via pytest
"""


def project(name: str, *deps: str) -> Project:
    return Project(name, tuple(map(Requirement, deps)), (Requirement("setuptools>=75"),))


def fixture_projects(*consumer_deps: str) -> list[Project]:
    return [project("vidpipe", "boto3==1.44.8"), project("vidpipe-consumer-service", "vidpipe==0.1.0", *consumer_deps)]


def check(projects: list[Project], *requirements: str, text: str = LOCK) -> list[str]:
    return lag("requirements.lock", parse_lock(text), projects, [Requirement(r) for r in requirements])


def test_parse_lock_reads_pins_hashes_markers_and_via():
    pins = parse_lock(LOCK)
    assert pins["boto3"].version == "1.44.8" and pins["boto3"].hashes == 2
    assert pins["boto3"].via == {"vidpipe", "vidpipe-consumer-service"}
    assert pins["colorama"].version == "0.4.6" and pins["colorama"].via == {"pytest"}
    assert pins["pytest"].via == {"-r requirements.txt"}


def test_a_lock_that_matches_its_declarations_passes():
    assert check(fixture_projects("httpx==0.28.1", "boto3"), "pytest==9.2.0", "setuptools>=75") == []


def test_a_dependency_added_without_make_lock_is_named():
    problems = check(fixture_projects("httpx==0.28.1", "boto3", "orjson"), "pytest==9.2.0", "setuptools>=75")
    assert problems == ["orjson (vidpipe-consumer-service) is not in requirements.lock: run `make lock`"]


def test_a_pin_changed_without_make_lock_is_named():
    problems = check(fixture_projects("httpx==0.28.2", "boto3"), "pytest==9.2.0", "setuptools>=75")
    assert problems == [
        "httpx: requirements.lock pins 0.28.1, vidpipe-consumer-service wants ==0.28.2: run `make lock`"
    ]
    problems = check(fixture_projects("httpx==0.28.1", "boto3"), "pytest==9.3.0", "setuptools>=75")
    assert problems == ["pytest: requirements.lock pins 9.2.0, -r requirements.txt wants ==9.3.0: run `make lock`"]


def test_a_dependency_removed_without_make_lock_is_named():
    problems = check(fixture_projects("boto3"), "pytest==9.2.0", "setuptools>=75")
    assert problems == [
        "httpx is locked in requirements.lock for vidpipe-consumer-service, which no longer declares it: run `make lock`"
    ]
    problems = check(fixture_projects("httpx==0.28.1", "boto3"), "setuptools>=75")
    assert problems == [
        "pytest is locked in requirements.lock for -r requirements.txt, which no longer declares it: run `make lock`"
    ]


def test_a_build_backend_the_lock_cannot_satisfy_is_named():
    projects = [Project("vidpipe", (Requirement("boto3==1.44.8"),), (Requirement("setuptools>=90"),))]
    problems = lag("x.lock", parse_lock(LOCK), projects)
    assert "setuptools: x.lock pins 84.2.1, vidpipe wants >=90: run `make lock`" in problems


def test_a_pin_without_hash_is_named():
    text = LOCK.replace("    --hash=sha256:cccc\n", "")
    problems = check(fixture_projects("httpx==0.28.1", "boto3"), "pytest==9.2.0", "setuptools>=75", text=text)
    assert problems == ["httpx==0.28.1 in requirements.lock has no --hash: run `make lock`"]


# ---- the committed locks ------------------------------------------------------------------------------------


def test_venv_lock_matches_requirements_and_every_package():
    requirements, _ = requirements_file(ROOT / "requirements.txt")
    problems = lag("requirements.lock", parse_lock(DEV_LOCK.read_text()), list(local_projects().values()), requirements)
    assert not problems, "\n".join(problems)


def venv_mismatch(name: str, pins: dict[str, Pin]) -> list[str]:
    venv = parse_lock(DEV_LOCK.read_text())
    return [
        f"{pkg}: {name} pins {pin.version}, requirements.lock {venv[pkg].version if pkg in venv else 'nothing'}: "
        "run `make lock`"
        for pkg, pin in sorted(pins.items())
        if pkg not in venv or venv[pkg].version != pin.version
    ]


@pytest.mark.parametrize("service", SERVICES)
def test_image_lock_matches_its_packages_and_the_venv(service):
    """Each image's lock covers its package and the contract, and pins what the venv pins: the tests run the
    versions that ship."""
    path = ROOT / "services" / service / "requirements.lock"
    projects = local_projects()
    pins = parse_lock(path.read_text())
    name = str(path.relative_to(ROOT))
    runtime = [
        Project(p.name, p.dependencies, ()) for p in (projects["services/shared"], projects[f"services/{service}"])
    ]
    problems = lag(name, pins, runtime, environment=IMAGE_ENVIRONMENT)
    assert not problems + venv_mismatch(name, pins), "\n".join(problems + venv_mismatch(name, pins))


def test_image_build_lock_has_every_package_build_backend():
    """services/build.lock: what the images' build stage builds the packages' wheels with."""
    pins = parse_lock((ROOT / "services" / "build.lock").read_text())
    build = [Project(p.name, (), p.build_requires) for p in local_projects().values()]
    problems = lag("services/build.lock", pins, build, environment=IMAGE_ENVIRONMENT)
    problems += venv_mismatch("services/build.lock", pins)
    assert not problems, "\n".join(problems)


def test_local_packages_require_each_other_at_their_own_versions():
    projects = local_projects()
    versions = {
        canonicalize_name(tomllib.loads((ROOT / folder / "pyproject.toml").read_text())["project"]["name"]): (
            tomllib.loads((ROOT / folder / "pyproject.toml").read_text())["project"]["version"]
        )
        for folder in projects
    }
    for p in projects.values():
        for req in p.dependencies:
            if canonicalize_name(req.name) in versions:
                assert req.specifier.contains(versions[canonicalize_name(req.name)]), (p.name, str(req))


# ---- what installs them -------------------------------------------------------------------------------------


def test_the_default_base_image_is_pinned_by_digest():
    dockerfile = (ROOT / "services" / "Dockerfile").read_text()
    base = re.search(r"^ARG BASE_IMAGE=(\S+)$", dockerfile, re.M)
    assert base and re.search(r"@sha256:[0-9a-f]{64}$", base[1]), base


def test_workflows_install_only_through_the_locks():
    """The deploy and CI jobs install nothing by name: Python from the hashed locks (make), npm with `npm ci`,
    actions by commit."""
    for workflow in sorted((ROOT / ".github" / "workflows").glob("*.yml")):
        doc = yaml.safe_load(workflow.read_text())
        for job in doc["jobs"].values():
            for step in job.get("steps", []):
                run = step.get("run", "")
                for forbidden in ("pip install", "pip3 install", "npm install", "npm i ", "pipx", "curl ", "wget "):
                    assert forbidden not in run, (workflow.name, forbidden, run)
                for npx in re.findall(r"npx[^\n]*", run):
                    assert "--no-install" in npx, (workflow.name, npx)
                if "uses" in step:
                    assert re.search(r"@[0-9a-f]{40}$", step["uses"]), (workflow.name, step["uses"])
    node = (ROOT / "mk" / "node.mk").read_text()
    assert "npm ci" in node and "npm install" not in node


def test_npm_lock_has_an_integrity_hash_for_every_download():
    """npm ci (mk/node.mk) checks each tarball against package-lock.json; bundled packages come inside
    their parent's checked tarball."""
    packages = json.loads((ROOT / "package-lock.json").read_text())["packages"]
    unchecked = [
        name
        for name, entry in packages.items()
        if name
        and not entry.get("inBundle")
        and not entry.get("link")
        and not entry.get("integrity", "").startswith("sha512-")
    ]
    assert len(packages) > 1 and not unchecked, unchecked
