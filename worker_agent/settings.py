"""What an agent is told to be: its settings (built by cli.py from the command line, or by tests) and the
version it reports at its join. Kept apart from agent.py, which runs an agent by them."""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from shared.defaults import HEARTBEAT_INTERVAL, MANAGER_URL


@dataclass
class AgentSettings:
    """Everything an Agent needs to run; cli.py builds it from the command line."""

    data_dir: Path
    hostname: str = field(default_factory=socket.gethostname)
    ip: str = "127.0.0.1"
    interval: float = HEARTBEAT_INTERVAL
    port: int | None = None
    """Health port on 127.0.0.1; None: the manual's 8081, or any free port (logged) when another agent has it."""
    manager_url: str = MANAGER_URL
    token: Callable[[], str | None] = lambda: None
    redis_url: str | None = None
    """When set, the agent skips joining and works this Redis directly (tests, development)."""
    job_key: bytes | None = None
    """With redis_url: the key jobs must be signed with; None runs unsigned jobs (logged as a warning)."""
    labels: dict[str, str] = field(default_factory=dict)
    """Sent with the join as facts["labels"]; fleet task targets may name them as key=value."""
    tags: list[str] = field(default_factory=list)
    """Sent with the join in the node document (facts["node"]["tags"]); node queries name them (tags:ssd)."""
    docker_host: str | None = None
    """Docker Engine API of docker components (unix:///..., tcp://...); None: DOCKER_HOST, else the default."""
    sftp_key: Path | None = None
    """Client key for sftp:// image URLs."""
    sftp_known_hosts: Path | None = None
    """known_hosts checked for sftp:// image URLs (unknown hosts are refused)."""
    capacity: dict[str, int | float] = field(default_factory=dict)
    """Overrides of detected facts (cpu_count, memory_total_mb, gpu_count) that placement places by."""
    ca_bundle: str | None = None  # verifies the manager (https://) and Redis (rediss://); None: the system's CAs


def agent_version() -> str:
    """The installed corral version, sent with the join.

    Read from the header of the distribution's metadata, not by ``metadata.version``: that parses the whole file
    as an e-mail message, and corral's holds the README as its long description (250 KB, about 9 ms of CPU per
    agent start; the header's few lines take well under 1 ms)."""
    try:
        dist = metadata.distribution("corral")
    except metadata.PackageNotFoundError:
        return "0+unknown"
    text = dist.read_text("METADATA") or dist.read_text("PKG-INFO") or ""
    for line in text.partition("\n\n")[0].splitlines():
        name, colon, value = line.partition(":")
        if colon and name.strip().lower() == "version":
            return value.strip()
    return dist.version
