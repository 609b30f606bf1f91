"""What a node reports about itself: heartbeat figures (every interval) and facts (once, at join)."""

from __future__ import annotations

import ipaddress
import logging
import os
import platform
import shutil
import socket
import subprocess
from collections.abc import Mapping
from typing import Any

import psutil

logger = logging.getLogger(__name__)

NVIDIA_SMI_TIMEOUT = 10.0
"""Seconds nvidia-smi may take to list the GPUs at join before the node reads as having none."""

CAPACITY_FACTS = ("cpu_count", "memory_total_mb", "gpu_count")
"""Facts placement places by, which agent flags may override (--cpu-cores, --memory-mb, --gpus)."""


def collect(interval: float, hostname: str, ip: str, tasks_running: int) -> dict[str, Any]:
    """The shared.heartbeat FIELDS (all but ``ts``, which Redis stamps) for one heartbeat."""
    memory = psutil.virtual_memory()
    load1, load5, load15 = os.getloadavg()
    net = psutil.net_io_counters()
    return {
        "interval": interval,
        "hostname": hostname,
        "ip": ip,
        # Non-blocking: the share of CPU time since the previous call (the first call reads 0.0).
        "cpu_usage_percent": psutil.cpu_percent(interval=None),
        "memory_usage_percent": memory.percent,
        "disk_usage_percent": psutil.disk_usage("/").percent,
        "load1": round(load1, 2),
        "load5": round(load5, 2),
        "load15": round(load15, 2),
        "net_bytes_sent": net.bytes_sent if net else 0,
        "net_bytes_recv": net.bytes_recv if net else 0,
        "cpu_count": psutil.cpu_count() or 1,
        "memory_total_mb": memory.total // (1024 * 1024),
        "tasks_running": tasks_running,
    }


def gpus() -> list[dict[str, Any]]:
    """The node's NVIDIA GPUs as [{"index", "model"}] from nvidia-smi; [] without it or when it fails."""
    binary = shutil.which("nvidia-smi")
    if binary is None:
        return []
    try:
        out = subprocess.run(
            [binary, "--query-gpu=index,name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=NVIDIA_SMI_TIMEOUT,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        logger.warning("nvidia-smi failed, reporting no GPUs: %s", exc)
        return []
    found = []
    for line in out.splitlines():
        index, _, model = line.partition(",")
        if index.strip().isdigit():
            found.append({"index": int(index), "model": model.strip()})
    return found


def addresses() -> list[str]:
    """The node's non-loopback IP addresses (v4 and v6, without link-local scope suffixes)."""
    found: list[str] = []
    for snics in psutil.net_if_addrs().values():
        for snic in snics:
            if snic.family not in (socket.AF_INET, socket.AF_INET6):
                continue
            address = snic.address.split("%", 1)[0]
            try:
                ip = ipaddress.ip_address(address)
            except ValueError:
                continue
            if not ip.is_loopback and address not in found:
                found.append(address)
    return found


def facts(overrides: Mapping[str, int | float] | None = None) -> dict[str, Any]:
    """What a node is, sent once with the join: os, kernel, arch, cpus, memory, GPUs, addresses, boot time,
    python; ``overrides`` (from agent flags) replace the detected cpu_count, memory_total_mb, gpu_count."""
    try:
        distro = platform.freedesktop_os_release().get("PRETTY_NAME", "")
    except OSError:
        distro = ""
    found_gpus = gpus()
    detected: dict[str, Any] = {
        "os": platform.system(),
        "distro": distro,
        "kernel": platform.release(),
        "arch": platform.machine(),
        "cpu_count": psutil.cpu_count() or 1,
        "memory_total_mb": psutil.virtual_memory().total // (1024 * 1024),
        "gpu_count": len(found_gpus),
        "gpus": found_gpus,
        "addresses": addresses(),
        "boot_time": psutil.boot_time(),
        "python": platform.python_version(),
    }
    for name, value in (overrides or {}).items():
        if name not in CAPACITY_FACTS:
            raise ValueError(f"{name} is not a capacity fact ({', '.join(CAPACITY_FACTS)})")
        detected[name] = value
    return detected


MAX_NETWORKS = 64
"""Most network addresses the node document lists (a host with hundreds of container veths lists the first)."""

MAX_DISKS = 64
"""Most mounted file systems the node document lists."""

PSEUDO_FILESYSTEMS = frozenset(
    {
        "autofs", "binfmt_misc", "bpf", "cgroup", "cgroup2", "configfs", "debugfs", "devfs", "devpts", "devtmpfs",
        "efivarfs", "fusectl", "hugetlbfs", "mqueue", "nsfs", "proc", "pstore", "ramfs", "rpc_pipefs",
        "securityfs", "selinuxfs", "squashfs", "sysfs", "tmpfs", "tracefs",
    }
)  # fmt: skip
"""File systems that hold no data of the node's own (kernel views, memory, read-only snap images)."""


def _os_version() -> str:
    """The distribution's version (``12`` for Debian 12), else the kernel's release."""
    try:
        release = platform.freedesktop_os_release()
    except OSError:
        release = {}
    return release.get("VERSION_ID") or platform.release()


def _interface_type(flags: str, hwaddr: str) -> str:
    names = set(flags.split(","))
    if "loopback" in names:
        return "Loopback"
    if "pointopoint" in names:
        return "Point-to-Point"
    return "Ethernet" if hwaddr else "Unknown"


def networks() -> list[dict[str, Any]]:
    """One entry per IP address of the node (document 003 §5.1.1 ``networks``), loopback included."""
    stats = psutil.net_if_stats()
    found: list[dict[str, Any]] = []
    for name, snics in psutil.net_if_addrs().items():
        hwaddr = next((s.address for s in snics if s.family == psutil.AF_LINK), "")
        hwaddr = "" if hwaddr == "00:00:00:00:00:00" else hwaddr.upper()
        stat = stats.get(name)
        flags = getattr(stat, "flags", "") if stat else ""
        for snic in snics:
            if snic.family not in (socket.AF_INET, socket.AF_INET6):
                continue
            found.append(
                {
                    "address": snic.address.split("%", 1)[0],
                    "name": name,
                    "mtu": stat.mtu if stat else 0,
                    "broadcast": snic.broadcast or "",
                    "netmask": snic.netmask or "",
                    "hwaddr": hwaddr,
                    "type": _interface_type(flags, hwaddr),
                }
            )
    return found[:MAX_NETWORKS]


def disks() -> list[dict[str, Any]]:
    """Each mounted file system holding data (document 003 §5.1.1 ``disks``), pseudo file systems skipped."""
    found: list[dict[str, Any]] = []
    seen: set[str] = set()
    # all=True: without it psutil drops "nodev" file systems, among them the overlay root of a container.
    for part in psutil.disk_partitions(all=True):
        if part.fstype in PSEUDO_FILESYSTEMS or part.mountpoint in seen or not os.path.isdir(part.mountpoint):
            continue
        try:
            total = psutil.disk_usage(part.mountpoint).total
        except OSError:
            continue
        if total <= 0:
            continue
        seen.add(part.mountpoint)
        found.append(
            {
                "dirName": part.mountpoint,
                "devName": part.device,
                "sysTypeName": part.fstype,
                "option": part.opts,
                "total": total,
            }
        )
    return found[:MAX_DISKS]


def node_document(hostname: str, agent_address: str, tags: list[str]) -> dict[str, Any]:
    """What document 003 §5.1.1 says a node reports about itself at start: host, os, memory, networks, disks,
    tags. Detected figures, never the capacity the flags override (placement reads those from the facts)."""
    memory = psutil.virtual_memory().total
    return {
        "hostname": hostname,
        "agentAddress": agent_address,
        "os": {
            "name": platform.system(),
            "version": _os_version(),
            "cpus": psutil.cpu_count() or 1,
            "architecture": platform.machine(),
        },
        # No swap: "ram" is the physical memory, as "total" is (the two are equal in the document's example).
        "memory": {"total": memory, "ram": memory},
        "networks": networks(),
        "disks": disks(),
        "tags": list(tags),
    }
