"""An instance's ``resAlloc`` enforced with cgroups (v1 or v2) where the agent may write them (as root).

Every instance gets a group of its own, ``corral/<instance_id>`` under each controller's root (v1:
memory and cpu hierarchies; v2: the unified one): memory limit (v1 memory.limit_in_bytes, also for swap where
memory.memsw exists; v2 memory.max with swap 0) and a CPU quota (cfs quota / cpu.max over a 100 ms period).
The process joins its groups itself before it runs the command (the launch script writes its pid into each
``cgroup.procs``), so everything it starts is in them. A kill by the kernel's OOM killer shows in the group's
``oom_kill`` count (v1 memory.oom_control, v2 memory.events), read before the start and after the end.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

CGROUP_ROOT = Path("/sys/fs/cgroup")
"""Where the cgroup file systems are mounted."""

GROUP_PARENT = "corral"
"""The agent's group, under each controller's root, that holds one group per instance."""

CPU_PERIOD_US = 100_000
"""The CPU quota period: ``cpus`` of it per period."""


@dataclass
class Limits:
    """What the agent set up for one instance: the ``cgroup.procs`` files its process joins, and what it says."""

    description: str  # the report's ``limits``
    procs_files: list[Path] = field(default_factory=list)
    groups: list[Path] = field(default_factory=list)
    memory_group: Path | None = None
    version: int = 0  # 0: not enforced

    @property
    def enforced(self) -> bool:
        return self.version != 0


def not_enforced(why: str) -> Limits:
    return Limits(f"not enforced: {why}")


def detect(root: Path = CGROUP_ROOT) -> int:
    """1 or 2: the cgroup version whose memory controller is mounted at ``root``; 0 when neither."""
    if (root / "memory" / "memory.limit_in_bytes").exists():
        return 1
    if (root / "cgroup.controllers").exists():
        return 2
    return 0


def describe_ask(res_alloc: dict[str, Any] | None) -> str:
    parts = []
    if res_alloc and res_alloc.get("mem_mb"):
        parts.append(f"memory {res_alloc['mem_mb']} MB")
    if res_alloc and res_alloc.get("cpus"):
        parts.append(f"cpu {res_alloc['cpus']:g}")
    return ", ".join(parts)


def setup(instance_id: str, res_alloc: dict[str, Any] | None, root: Path = CGROUP_ROOT) -> Limits | None:
    """The groups of one instance with its limits set (again, for a restart); None when it asks for none."""
    ask = describe_ask(res_alloc)
    if not ask or res_alloc is None:
        return None
    if os.geteuid() != 0:
        return not_enforced("the agent does not run as root")
    version = detect(root)
    if version == 0:
        return not_enforced(f"no cgroup memory controller under {root}")
    try:
        limits = _setup_v1(instance_id, res_alloc, root) if version == 1 else _setup_v2(instance_id, res_alloc, root)
    except OSError as exc:
        return not_enforced(f"cgroup v{version} not writable: {exc}")
    limits.description = f"enforced (cgroup v{version}: {ask})"
    return limits


def _write(path: Path, value: str) -> None:
    path.write_text(value)


def _setup_v1(instance_id: str, res_alloc: dict[str, Any], root: Path) -> Limits:
    limits = Limits("", version=1)
    mem_mb = int(res_alloc.get("mem_mb") or 0)
    cpus = float(res_alloc.get("cpus") or 0)
    if mem_mb:
        group = root / "memory" / GROUP_PARENT / instance_id
        group.mkdir(parents=True, exist_ok=True)
        limit = str(mem_mb * 1024 * 1024)
        swap = group / "memory.memsw.limit_in_bytes"
        # memsw must never be below the memory limit: lower it last, raise it first (a restart may change both).
        if swap.exists():
            try:
                _write(swap, "-1")
            except OSError:
                pass
        _write(group / "memory.limit_in_bytes", limit)
        if swap.exists():
            try:
                _write(swap, limit)  # no escape into swap
            except OSError as exc:
                logger.debug("memsw limit not set for %s: %s", instance_id, exc)
        limits.groups.append(group)
        limits.procs_files.append(group / "cgroup.procs")
        limits.memory_group = group
    if cpus:
        group = root / "cpu" / GROUP_PARENT / instance_id
        group.mkdir(parents=True, exist_ok=True)
        _write(group / "cpu.cfs_period_us", str(CPU_PERIOD_US))
        _write(group / "cpu.cfs_quota_us", str(max(1000, int(cpus * CPU_PERIOD_US))))
        limits.groups.append(group)
        limits.procs_files.append(group / "cgroup.procs")
    return limits


def _setup_v2(instance_id: str, res_alloc: dict[str, Any], root: Path) -> Limits:
    limits = Limits("", version=2)
    parent = root / GROUP_PARENT
    parent.mkdir(exist_ok=True)
    for holder in (root, parent):
        _write(holder / "cgroup.subtree_control", "+memory +cpu")
    group = parent / instance_id
    group.mkdir(exist_ok=True)
    mem_mb = int(res_alloc.get("mem_mb") or 0)
    cpus = float(res_alloc.get("cpus") or 0)
    if mem_mb:
        _write(group / "memory.max", str(mem_mb * 1024 * 1024))
        if (group / "memory.swap.max").exists():
            _write(group / "memory.swap.max", "0")
        limits.memory_group = group
    if cpus:
        _write(group / "cpu.max", f"{max(1000, int(cpus * CPU_PERIOD_US))} {CPU_PERIOD_US}")
    limits.groups.append(group)
    limits.procs_files.append(group / "cgroup.procs")
    return limits


def oom_kills(limits: Limits | None) -> int:
    """How many processes the OOM killer has killed in the instance's memory group so far (0 if unknown)."""
    if limits is None or limits.memory_group is None:
        return 0
    name = "memory.oom_control" if limits.version == 1 else "memory.events"
    try:
        text = (limits.memory_group / name).read_text()
    except OSError:
        return 0
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == "oom_kill":
            return int(value)
    if limits.version == 1:
        # Kernels before 4.13 count no kills: a limit hit that ended the process is the best sign there is.
        try:
            return int((limits.memory_group / "memory.failcnt").read_text())
        except (OSError, ValueError):
            return 0
    return 0


def remove(limits: Limits | None) -> None:
    """Remove the instance's groups (its processes must be gone)."""
    if limits is None:
        return
    for group in limits.groups:
        try:
            group.rmdir()
        except OSError as exc:
            logger.warning("could not remove cgroup %s: %s", group, exc)
