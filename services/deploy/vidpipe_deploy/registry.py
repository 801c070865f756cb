"""The deployed services: one folder each under services/, in deployment order.

Each folder holds the service's runtime (its package), its image's declarations (pyproject.toml, its lock)
and its deploy unit, `deploy.py`, which defines `UNIT`: identity and grants, workload, network policy and
scaling, in one module that the CDK app and the charts both loop over. The folder's name is the service's
name (image, Deployment, ServiceAccount), so renaming a service is renaming its folder and its line below;
adding one is a folder (services/deploy/template/ is a start) and a line.

The rooms render with the charts' building blocks (cdk8s_app.rooms), so they are loaded here by path, when
first asked for, never imported by this package's modules.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterable
from functools import cache
from pathlib import Path

from .units import Services, ServiceUnit

SERVICES_DIR = Path(__file__).resolve().parents[2]
FOLDERS = ("frame-publisher", "consumer-service", "inference-service", "analytics-service")
UNIT_FILE = "deploy.py"


class RegistryError(RuntimeError):
    """A registered folder without a usable deploy unit; the message names the file."""


def load_unit(folder: Path) -> ServiceUnit:
    """The unit `folder`/deploy.py defines as UNIT, named after the folder (and so is its role, unless the
    unit names one)."""
    path = folder / UNIT_FILE
    if not path.is_file():
        raise RegistryError(f"{path} is missing: every deployed service declares its unit there")
    module_name = "vidpipe_room_" + folder.name.replace("-", "_").replace(".", "_")
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise RegistryError(f"{path} cannot be loaded as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # pydantic resolves the unit's annotations through its module
    spec.loader.exec_module(module)
    unit = getattr(module, "UNIT", None)
    if not isinstance(unit, ServiceUnit):
        raise RegistryError(f"{path} defines no UNIT (a vidpipe_deploy.units.ServiceUnit)")
    return unit.model_copy(update={"name": folder.name, "role": unit.role or folder.name})


def load_services(folders: Iterable[Path]) -> Services:
    return Services(units=tuple(load_unit(folder) for folder in folders))


@cache
def registered() -> Services:
    """The services of this tree, as FOLDERS lists them."""
    return load_services(SERVICES_DIR / folder for folder in FOLDERS)
