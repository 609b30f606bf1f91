"""From an app's stored definition (camelCase, as validated) to what its instances are: ids, RUN_INSTANCE payloads."""

from __future__ import annotations

import json
import uuid
from typing import Any

from manager_api.models import App
from manager_api.services import secret_store
from shared.config_paths import is_safe_id

ORCHESTRATION = ("nodeQuery", "instances", "unreachableSeconds")
"""Fields of a definition that say where and how many, not what runs: changing them replaces no instance."""


def spec_of(app: App) -> dict[str, Any]:
    """The stored definition of ``app``."""
    spec: dict[str, Any] = json.loads(app.spec)
    return spec


def secret_of(app: App) -> dict[str, str]:
    """The app's secretEnvs in plain (for a RUN_INSTANCE payload: dispatch seals it for the node)."""
    return secret_store.decrypt_env(app.secret_envs)


def secret_names(app: App) -> dict[str, str]:
    """What answers show of the app's secretEnvs: each name with "(secret)", never a value. Beside the
    definition, not in it: a definition read and PUT back as is keeps the stored values."""
    return secret_store.names_of(app.secret_envs)


def process_part(spec: dict[str, Any]) -> dict[str, Any]:
    """What the instances run: the definition without its orchestration (a change here is a new version)."""
    return {key: value for key, value in spec.items() if key not in ORCHESTRATION}


def new_instance_id(app: str) -> str:
    """A fresh instance id: "<app>-<8 hex>" when that is a safe id, else 32 hex."""
    candidate = f"{app}-{uuid.uuid4().hex[:8]}"
    return candidate if is_safe_id(candidate) else uuid.uuid4().hex


def resources(spec: dict[str, Any]) -> tuple[float, int]:
    """(cpus, memory MB) one instance reserves on its node."""
    alloc = spec.get("resAlloc") or {}
    return float(alloc.get("cpus") or 0.0), int(alloc.get("memMb") or 0)


def run_payload(
    app: str, instance_id: str, version: int, spec: dict[str, Any], secret: dict[str, str] | None = None
) -> dict[str, Any]:
    """The RUN_INSTANCE payload (shared.messages.InstanceSpecSchema) of one instance. ``secret_env`` is the
    plain ``secret`` here: dispatch.instance_jobs seals it for the instance's node before it leaves."""
    return {
        "app": app,
        "instance_id": instance_id,
        "version": version,
        "command": spec["toProcess"],
        "args": list(spec.get("args") or []),
        "working_dir": spec.get("workingDirectory"),
        "env": dict(spec.get("envs") or {}),
        "ports": list(spec.get("ports") or []),
        "kill_signal": spec["killSignal"],
        "uris": list(spec.get("uris") or []),
        "health_checks": [
            {
                "protocol": check["protocol"],
                "path": check["path"],
                "port_index": check["portIndex"],
                "command": check["command"],
                "initial_delay_seconds": check["initialDelaySeconds"],
                "interval_seconds": check["intervalSeconds"],
                "timeout_seconds": check["timeoutSeconds"],
                "max_consecutive_failures": check["maxConsecutiveFailures"],
            }
            for check in spec.get("healthChecks") or []
        ],
        "res_alloc": None
        if spec.get("resAlloc") is None
        else {"cpus": spec["resAlloc"]["cpus"], "mem_mb": spec["resAlloc"]["memMb"]},
        "backoff_seconds": spec["backoffSeconds"],
        "backoff_factor": spec["backoffFactor"],
        "max_backoff_seconds": spec["maxLaunchDelaySeconds"],
        # Only when there is one: without it the payload is already the wire's (messages.InstanceSpecSchema).
        **({"secret_env": dict(secret)} if secret else {}),
    }
