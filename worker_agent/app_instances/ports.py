"""The host ports of app instances: each ``0`` of a spec's ``ports`` becomes a free port of this node.

Ports come from defaults.APP_PORT_RANGE less the kernel's ephemeral range (ip_local_port_range), so an
outgoing connection never takes a port an instance is about to listen on; a port is checked to bind before it
is handed out, and stays held while the instance that had it exists, stopping included (the record of a
stopping instance holds its ports until its process is gone), so two instances never share one.
"""

from __future__ import annotations

import random
import socket
import threading
from collections.abc import Iterable
from pathlib import Path

from shared.defaults import APP_PORT_RANGE

EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
"""Where Linux keeps the range it takes outgoing (ephemeral) ports from."""


class NoFreePort(Exception):
    """Every port of the range is held or taken on this node."""


def ephemeral_range(path: Path = EPHEMERAL_RANGE_FILE) -> tuple[int, int] | None:
    """The kernel's ephemeral port range, or None where it cannot be read."""
    try:
        low, high = (int(part) for part in path.read_text().split())
    except (OSError, ValueError):
        return None
    return low, high


def usable_ports(port_range: tuple[int, int] = APP_PORT_RANGE, ephemeral: tuple[int, int] | None = None) -> list[int]:
    """The ports of ``port_range`` (inclusive) outside ``ephemeral``, in order."""
    low, high = port_range
    return [p for p in range(low, high + 1) if ephemeral is None or not ephemeral[0] <= p <= ephemeral[1]]


def binds(port: int) -> bool:
    """Whether a listening socket could bind ``port`` on every address of this node right now."""
    for family, address in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
        try:
            sock = socket.socket(family, socket.SOCK_STREAM)
        except OSError:
            continue  # no IPv6 here
        try:
            # As servers do: a port only in TIME_WAIT is free for them.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind((address, port))
        except OSError:
            return False
        finally:
            sock.close()
    return True


class PortAllocator:
    """Hands out free ports round-robin over the usable range, never one held by an instance of this agent."""

    def __init__(self, ports: list[int] | None = None) -> None:
        self.ports = ports if ports is not None else usable_ports(APP_PORT_RANGE, ephemeral_range())
        self._held: dict[int, str] = {}  # port -> instance id
        # Round-robin from a random place: a port just freed is the last to come again, and two agents on one
        # host (tests, or a second agent on its own data dir) seldom race for the same port.
        self._next = random.randrange(len(self.ports)) if self.ports else 0
        self._lock = threading.Lock()

    def hold(self, instance_id: str, ports: Iterable[int]) -> None:
        """Mark ``ports`` as held by ``instance_id`` (a recovered record's, or fixed ports of a spec)."""
        with self._lock:
            for port in ports:
                self._held[port] = instance_id

    def release(self, instance_id: str) -> None:
        """Free every port ``instance_id`` held: call once its process is gone."""
        with self._lock:
            for port in [p for p, holder in self._held.items() if holder == instance_id]:
                del self._held[port]

    def held(self) -> dict[int, str]:
        with self._lock:
            return dict(self._held)

    def assign(self, instance_id: str, wanted: list[int]) -> list[int]:
        """The ports of a spec's ``wanted`` list: each 0 a free port, others as given; all held for ``instance_id``.

        Raises NoFreePort (holding nothing) when the range has no free port left.
        """
        with self._lock:
            picked: list[int] = []
            for port in wanted:
                if port:
                    picked.append(port)
                    continue
                picked.append(self._pick(set(picked)))
            for port in picked:
                self._held[port] = instance_id
            return picked

    def _pick(self, taken: set[int]) -> int:
        count = len(self.ports)
        for step in range(count):
            port = self.ports[(self._next + step) % count]
            if port in self._held or port in taken or not binds(port):
                continue
            self._next = (self._next + step + 1) % count
            return port
        raise NoFreePort(f"no free port left in {self.ports[0]}-{self.ports[-1]}" if self.ports else "no port range")
