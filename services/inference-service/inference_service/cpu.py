"""What the pod may use of the CPU: its limit (cgroup quota, not the host's core count) and whether the
cores compute bf16 natively (AMX-BF16 or AVX512-BF16). Pure reads of /sys and /proc; paths are
parameters so tests can point them at fixtures."""

from __future__ import annotations

import math
import os
import platform
from pathlib import Path

BF16_FLAGS = ("amx_bf16", "avx512_bf16")


def _quota_v2(path: Path) -> float | None:
    """cgroup v2 cpu.max: "<quota> <period>" or "max <period>"."""
    try:
        quota, period = path.read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    try:
        return int(quota) / int(period) if int(period) > 0 and int(quota) > 0 else None
    except ValueError:
        return None


def _quota_v1(directory: Path) -> float | None:
    """cgroup v1 cpu.cfs_quota_us / cpu.cfs_period_us (quota -1: no limit)."""
    try:
        quota = int((directory / "cpu.cfs_quota_us").read_text())
        period = int((directory / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota / period if quota > 0 and period > 0 else None


def host_cpus() -> int:
    """CPUs this process may run on (its affinity), else the host's count."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def cpu_limit(cgroup_root: str | os.PathLike[str] = "/sys/fs/cgroup", available: int | None = None) -> int:
    """Whole CPUs the pod may use: its cgroup quota rounded up (a 1.5-CPU limit gets 2 threads, as
    Kubernetes' CFS quota lets it burst within each period), at most the CPUs it may run on."""
    root = Path(cgroup_root)
    cpus = available if available is not None else host_cpus()
    quota = _quota_v2(root / "cpu.max")
    if quota is None:
        for v1 in (root / "cpu", root / "cpu,cpuacct", root):
            quota = _quota_v1(v1)
            if quota is not None:
                break
    if quota is not None:
        cpus = min(cpus, max(1, math.ceil(quota - 1e-9)))
    return max(1, cpus)


def cpu_flags(cpuinfo: str | os.PathLike[str] = "/proc/cpuinfo") -> set[str]:
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags") and ":" in line:
            return set(line.split(":", 1)[1].split())
    return set()


def bf16_flags(cpuinfo: str | os.PathLike[str] = "/proc/cpuinfo") -> list[str]:
    """The native bf16 instructions this CPU has (empty: bf16 would be emulated or refused)."""
    flags = cpu_flags(cpuinfo)
    return [flag for flag in BF16_FLAGS if flag in flags]


def cpu_model(cpuinfo: str | os.PathLike[str] = "/proc/cpuinfo") -> str:
    """The CPU's model name (the same for every node of an instance type), else the platform's."""
    try:
        for line in Path(cpuinfo).read_text().splitlines():
            if line.startswith("model name") and ":" in line:
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def is_x86_64() -> bool:
    return platform.machine().lower() in ("x86_64", "amd64")
