"""The component drivers of one agent by component type, each made on first use; the agent's own set of them."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from shared.states import ComponentType

from .base import Driver
from .process import ProcessDriver

if TYPE_CHECKING:
    from ..components.image_fetch import SftpSettings
    from ..components.records import ComponentRecord


class DriverRegistry:
    """Hands out the driver of a component type, made the first time it is asked for (so an agent without a docker
    component never imports the docker SDK)."""

    def __init__(self, factories: Mapping[str, Callable[[], Driver]], default: str, eager: Iterable[str] = ()) -> None:
        self._factories = dict(factories)
        # A record of no known type (the stop of a component this node never had) goes to this one; nothing runs
        # for it, so the driver finds nothing to do.
        self._default = default
        # Types whose workloads are looked for after a restart even with no record of them (--docker-host given).
        self._eager = frozenset(eager)
        self._made: dict[str, Driver] = {}
        self._lock = threading.Lock()

    def types(self) -> list[str]:
        """The registered component types, in registration order."""
        return list(self._factories)

    def type_of(self, component_type: str) -> str:
        """The registered type whose driver runs ``component_type``: itself, or the default for an unknown one."""
        return component_type if component_type in self._factories else self._default

    def of(self, component_type: str) -> Driver:
        """The driver of ``component_type`` (the default driver's for an unknown type), made on first use."""
        name = self.type_of(component_type)
        with self._lock:
            driver = self._made.get(name)
            if driver is None:
                driver = self._made[name] = self._factories[name]()
            return driver

    def for_record(self, rec: ComponentRecord) -> Driver:
        """The driver that runs ``rec``, by its type."""
        return self.of(rec.type)

    def made(self) -> list[Driver]:
        """The drivers made so far."""
        with self._lock:
            return list(self._made.values())

    def eager(self, component_type: str) -> bool:
        """Whether workloads of this type are looked for after a restart even when no record names one."""
        return component_type in self._eager


def agent_drivers(
    components_dir: Path,
    node_id: str,
    data_dir: Path,
    docker_host: str | None,
    sftp: SftpSettings,
    docker_check_interval: float,
) -> DriverRegistry:
    """The agent's drivers: process, and docker (made, and the docker SDK imported, when a docker component comes)."""

    def docker() -> Driver:
        from .docker import DockerDriver

        return DockerDriver(docker_host, node_id, data_dir, sftp, docker_check_interval)

    return DriverRegistry(
        {ComponentType.PROCESS.value: lambda: ProcessDriver(components_dir), ComponentType.DOCKER.value: docker},
        default=ComponentType.PROCESS.value,
        # With --docker-host given, containers are looked for after a restart even without a record of them.
        eager=[ComponentType.DOCKER.value] if docker_host else [],
    )
