"""The docker driver: components as containers through the docker SDK (Docker Engine API, or podman's).

Imported only when a docker component is first used, so an agent without one never loads the SDK.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import docker
import docker.errors
import requests
from docker.models.containers import Container

from shared import container_labels
from shared.defaults import IMAGE_DOWNLOAD_TIMEOUT
from shared.states import ComponentState

from ..components.image_fetch import FetchCancelled, FetchError, SftpSettings, fetch, redact
from ..components.records import ComponentRecord
from .base import Check, ConfigFiles, Exit, Found, StartError, Step

logger = logging.getLogger(__name__)

DOCKER_API_TIMEOUT = 60
"""Seconds one Docker API call may take (an image load of a big tar takes the longest)."""

LOG_TAIL_LINES = 20
"""Lines of a container's log put in the error message when it exits."""

ENGINE_ERRORS = (docker.errors.DockerException, requests.exceptions.RequestException, OSError)
"""What a call to the engine may raise: its own errors, or the transport's when it is unreachable."""

LABEL_BUSINESS = container_labels.BUSINESS
LABEL_COMPONENT = container_labels.COMPONENT
LABEL_GENERATION = container_labels.GENERATION
LABEL_NODE = container_labels.NODE


def container_name(rec: ComponentRecord) -> str:
    return f"corral-{rec.business_id}-{rec.component_id}-{rec.generation}"


def cpu_percent(stats: dict[str, Any], previous: dict[str, Any] | None) -> float:
    """CPU % (100 = one core) between two stats samples: ``precpu_stats`` of the same answer (Docker), else
    the previous answer (podman's one-shot answers); fields may be missing, then 0.0."""
    cpu = stats.get("cpu_stats") or {}
    pre = stats.get("precpu_stats") or {}
    if not (pre.get("cpu_usage") or {}).get("total_usage") and previous is not None:
        pre = previous.get("cpu_stats") or {}
    try:
        cpu_delta = float(cpu["cpu_usage"]["total_usage"]) - float(pre["cpu_usage"]["total_usage"])
        system_delta = float(cpu["system_cpu_usage"]) - float(pre["system_cpu_usage"])
    except (KeyError, TypeError, ValueError):
        return 0.0
    if cpu_delta <= 0 or system_delta <= 0:
        return 0.0
    cpus = cpu.get("online_cpus") or len((cpu.get("cpu_usage") or {}).get("percpu_usage") or []) or os.cpu_count() or 1
    return round(cpu_delta / system_delta * float(cpus) * 100.0, 2)


def memory_mb(stats: dict[str, Any]) -> float:
    """Memory in use minus the page cache, as `docker stats` shows it; 0.0 when missing."""
    mem = stats.get("memory_stats") or {}
    usage = mem.get("usage") or 0
    cache = (mem.get("stats") or {}).get("inactive_file") or (mem.get("stats") or {}).get("cache") or 0
    return round(max(0, usage - cache) / (1024 * 1024), 2)


class DockerDriver:
    """Runs the docker components of one node on one engine."""

    engine = "docker engine"

    def __init__(
        self, docker_host: str | None, node_id: str, data_dir: Path, sftp: SftpSettings, check_interval: float = 1.0
    ) -> None:
        self.docker_host = docker_host
        self.check_interval = check_interval  # one list call per interval for every container of the node
        self._failing = False
        self.node_id = node_id
        self.images_dir = data_dir / "images"
        self.sftp = sftp
        self._client: docker.DockerClient | None = None
        self._client_lock = threading.Lock()
        self._last_stats: dict[str, dict[str, Any]] = {}

    def where(self) -> str:
        return self.docker_host or os.environ.get("DOCKER_HOST") or "the default docker socket"

    def client(self) -> docker.DockerClient:
        """The engine client, made on first use and again after a failure; raises StartError when unreachable."""
        with self._client_lock:
            if self._client is None:
                where = self.docker_host or os.environ.get("DOCKER_HOST") or ""
                if where.startswith("unix://") and not os.path.exists(where.removeprefix("unix://")):
                    # Checked first: the SDK leaks the socket of a failed unix connect.
                    raise StartError(f"docker engine unreachable at {where}: no socket there")
                client = None
                try:
                    if self.docker_host:
                        client = docker.DockerClient(base_url=self.docker_host, timeout=DOCKER_API_TIMEOUT)
                    else:
                        client = docker.from_env(timeout=DOCKER_API_TIMEOUT)
                    client.ping()
                except Exception as exc:
                    if client is not None:
                        client.close()
                    raise StartError(f"docker engine unreachable at {self.where()}: {exc}") from None
                self._client = client
            return self._client

    def close(self) -> None:
        """Close the connection to the engine; the containers keep running."""
        self._reset()

    def _reset(self) -> None:
        with self._client_lock:
            if self._client is not None:
                self._client.close()
            self._client = None

    def handle(self, rec: ComponentRecord) -> str:
        """The short container id, for log lines."""
        return f"container {(rec.container_id or '-')[:12]}"

    # -- start -------------------------------------------------------------------------------------

    def start(self, rec: ComponentRecord, env: dict[str, str], files: ConfigFiles, step: Step, check: Check) -> None:
        """Image (fetched and loaded if missing), then the container; sets rec.container_id."""
        spec = rec.spec
        try:
            client = self.client()
            self._ensure_image(rec, client, step, check)
            step(ComponentState.STARTING)
            container = self._existing(client, rec)
            if container is not None and container.status == "running":
                rec.container_id = container.id
                logger.info("%s: container %s already runs, kept", rec.describe(), container.short_id)
                return
            if container is not None:
                container.remove(force=True)
            requirements = spec.get("resource_requirements") or {}
            options: dict[str, Any] = {
                "name": container_name(rec),
                "environment": env,
                "labels": {
                    LABEL_BUSINESS: rec.business_id,
                    LABEL_COMPONENT: rec.component_id,
                    LABEL_GENERATION: str(rec.generation),
                    LABEL_NODE: self.node_id,
                },
                "volumes": {str(host): {"bind": str(inside), "mode": "ro"} for inside, host in files},
                "init": True,
                "detach": True,
            }
            if requirements.get("cpu_cores"):
                options["nano_cpus"] = int(float(requirements["cpu_cores"]) * 1e9)
            if requirements.get("memory_mb"):
                options["mem_limit"] = f"{int(requirements['memory_mb'])}m"
            command = [spec["command"], *spec["args"]] if spec.get("command") else list(spec.get("args") or [])
            if command:
                options["command"] = command
            if spec.get("working_dir"):
                options["working_dir"] = spec["working_dir"]
            check()
            container = client.containers.create(spec["image_name"], **options)
            rec.container_id = container.id
            container.start()
        except (StartError, FetchError) as exc:
            raise StartError(str(exc)) from None
        except ENGINE_ERRORS as exc:
            self._reset_if_unreachable(exc)
            raise StartError(f"docker engine at {self.where()}: {_explain(exc)}") from None

    def _ensure_image(
        self,
        rec: ComponentRecord,
        client: docker.DockerClient,
        step: Step,
        check: Check,
    ) -> None:
        image_name = rec.spec.get("image_name")
        if not image_name:
            raise StartError("a docker component needs image_name")
        try:
            client.images.get(image_name)
            return
        except docker.errors.ImageNotFound:
            pass
        url = rec.spec.get("image_url")
        if not url:
            raise StartError(f"image {image_name} is not on this node and the component has no image_url")
        step(ComponentState.DOWNLOADING)
        dest = self.images_dir / f"{rec.business_id}-{rec.component_id}-{rec.generation}-{uuid.uuid4().hex[:8]}.tar"
        logger.info("%s: fetching image %s from %s", rec.describe(), image_name, redact(url))
        try:
            fetch(url, dest, IMAGE_DOWNLOAD_TIMEOUT, self.sftp, cancelled=lambda: _raises(check))
        except FetchCancelled:
            check()
            raise
        try:
            check()
            with open(dest, "rb") as tar:
                client.images.load(tar)
        finally:
            dest.unlink(missing_ok=True)
        try:
            client.images.get(image_name)
        except docker.errors.ImageNotFound:
            raise StartError(f"image {image_name} not in the loaded tar from {redact(url)}") from None

    def _existing(self, client: docker.DockerClient, rec: ComponentRecord) -> Container | None:
        try:
            return client.containers.get(rec.container_id or container_name(rec))
        except docker.errors.NotFound:
            return None

    # -- watch -------------------------------------------------------------------------------------

    def watch(self, running: list[ComponentRecord]) -> list[ComponentRecord]:
        """Those of ``running`` whose container no longer runs: one list call for every container of the node."""
        try:
            found = self.list_ours()
        except Exception as exc:
            if not self._failing:
                logger.warning("node %s: cannot check containers, will keep trying: %s", self.node_id, exc)
            self._failing = True
            return []
        if self._failing:
            logger.info("node %s: docker engine reachable again", self.node_id)
            self._failing = False
        return [rec for rec in running if rec.key not in found or not found[rec.key]["running"]]

    def inspect(self, rec: ComponentRecord) -> Exit | None:
        """None while the container runs; else its exit code and a message with the last log lines."""
        client = self.client()
        try:
            container = client.containers.get(rec.container_id or container_name(rec))
        except docker.errors.NotFound:
            return Exit(None, "the container is gone (removed outside corral)")
        except ENGINE_ERRORS as exc:
            self._reset_if_unreachable(exc)
            raise
        if container.status in ("running", "created", "restarting", "paused"):
            return None
        code = (container.attrs.get("State") or {}).get("ExitCode")
        logs = ""
        try:
            logs = container.logs(tail=LOG_TAIL_LINES).decode(errors="replace").strip()
        except docker.errors.DockerException:
            pass
        reason = f"container exited with code {code}" if code is not None else f"container is {container.status}"
        return Exit(code, f"{reason}; log: {logs}" if logs else reason)

    def stats(self, rec: ComponentRecord) -> dict[str, Any] | None:
        """CPU % and memory of the container, as `docker stats` shows them."""
        if rec.container_id is None:
            return None
        client = self.client()
        try:
            try:
                # One sample, no second of waiting: CPU % comes from our previous sample (podman never
                # fills precpu_stats anyway).
                stats = client.api.stats(rec.container_id, stream=False, one_shot=True)
            except docker.errors.InvalidVersion:
                stats = client.api.stats(rec.container_id, stream=False)
        except ENGINE_ERRORS as exc:
            self._reset_if_unreachable(exc)
            raise
        previous = self._last_stats.get(rec.container_id)
        self._last_stats[rec.container_id] = stats
        return {"cpu_percent": cpu_percent(stats, previous), "memory_mb": memory_mb(stats), "gpu_percent": None}

    def tidy(self) -> None:
        """Nothing: the last stats of a container go with its stop."""

    # -- stop --------------------------------------------------------------------------------------

    def may_run(self, rec: ComponentRecord, prior: str) -> bool:
        """Whether a container may exist: nothing is created before STARTING, unless the deploy recorded one."""
        return rec.container_id is not None or prior in (
            ComponentState.STARTING,
            ComponentState.RUNNING,
            ComponentState.STOPPING,
        )

    def stop(self, rec: ComponentRecord, grace_seconds: float) -> int | None:
        """docker stop with ``grace_seconds``, then remove; returns the container's exit code."""
        client = self.client()
        try:
            container = self._existing(client, rec)
            if container is None:
                return None
            if rec.container_id is None:
                rec.container_id = container.id
            if container.status in ("running", "restarting", "paused", "created"):
                container.stop(timeout=int(grace_seconds + 0.999))
            container.reload()
            code = (container.attrs.get("State") or {}).get("ExitCode")
            container.remove(force=True)
        except docker.errors.NotFound:
            return None
        except ENGINE_ERRORS as exc:
            self._reset_if_unreachable(exc)  # the next attempt (the manager retries) connects afresh
            raise
        self._last_stats.pop(container.id, None)
        return int(code) if code is not None else None

    # -- restart -----------------------------------------------------------------------------------

    def survey(self) -> dict[str, Found]:
        """The containers labelled with this node, by record key."""
        return self.list_ours()

    def adopt(self, rec: ComponentRecord, found: dict[str, Found]) -> Exit | None:
        """None when the container of ``rec`` still runs (its id recorded), else its exit code when it is there."""
        container = found.get(rec.key)
        if container is not None:
            rec.container_id = container["id"]
            if container["running"]:
                return None
        return Exit(container["exit_code"] if container is not None else None)

    def list_ours(self) -> dict[str, Found]:
        """The containers labelled with this node, by record key: id, running, exit code."""
        from ..components.records import record_key

        client = self.client()
        found: dict[str, dict[str, Any]] = {}
        for container in client.containers.list(all=True, filters={"label": f"{LABEL_NODE}={self.node_id}"}):
            labels = container.labels or {}
            try:
                key = record_key(labels[LABEL_BUSINESS], labels[LABEL_COMPONENT], int(labels[LABEL_GENERATION]))
            except (KeyError, ValueError):
                continue
            found[key] = {
                "business_id": labels[LABEL_BUSINESS],
                "component_id": labels[LABEL_COMPONENT],
                "generation": int(labels[LABEL_GENERATION]),
                "id": container.id,
                "running": container.status == "running",
                "exit_code": (container.attrs.get("State") or {}).get("ExitCode"),
            }
        return found

    def remove(self, found: Found) -> None:
        """Remove a container of ours whatever its state."""
        try:
            self.client().containers.get(found["id"]).remove(force=True)
        except docker.errors.NotFound:
            pass

    def forget(self, rec: ComponentRecord) -> None:
        """Nothing held: the stop removed the container."""

    def _reset_if_unreachable(self, exc: BaseException) -> None:
        if not isinstance(exc, docker.errors.APIError):  # an APIError means the engine answered
            self._reset()


def _raises(check: Callable[[], None]) -> bool:
    try:
        check()
    except Exception:
        return True
    return False


def _explain(exc: BaseException) -> str:
    if isinstance(exc, docker.errors.APIError):
        return str(exc.explanation or exc)
    return str(exc)
