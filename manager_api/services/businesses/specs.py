"""From a validated component request to what the rest needs: the row's columns, placement's Demand,
the DEPLOY_COMPONENT payload, and whether two specs differ."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from manager_api.services import secret_store
from manager_api.services.placement.model import Demand

SECRET = "secret_environment_variables"
"""A component's secret env: only in its row, encrypted (never in Business.spec, never in an answer)."""

SPEC_KEYS = (
    "component_name",
    "type",
    "command",
    "args",
    "working_dir",
    "image_url",
    "image_name",
    "resource_requirements",
    "environment_variables",
    "config_files",
    "affinity",
    "stop_grace_seconds",
)
"""The fields of a component that, when any differs, make an update replace it."""


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def requirements(spec: Mapping[str, Any]) -> dict[str, Any]:
    """resource_requirements with every default filled in."""
    req = spec.get("resource_requirements") or {}
    return {
        "cpu_cores": float(req.get("cpu_cores", 0.0)),
        "memory_mb": int(req.get("memory_mb", 0)),
        "gpu": bool(req.get("gpu", False)),
    }


def affinity(spec: Mapping[str, Any]) -> dict[str, Any]:
    """affinity with every default filled in."""
    aff = spec.get("affinity") or {}
    return {"require_gpu": bool(aff.get("require_gpu", False)), "node_labels": dict(aff.get("node_labels") or {})}


def normalized(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The spec's fields that matter, defaults filled in, for comparing an old and a new version."""
    out = {key: spec.get(key) for key in SPEC_KEYS}
    out["resource_requirements"] = requirements(spec)
    out["affinity"] = affinity(spec)
    out["args"] = list(spec.get("args") or [])
    out["environment_variables"] = dict(spec.get("environment_variables") or {})
    out["config_files"] = [{"path": f["path"], "content": f["content"]} for f in spec.get("config_files") or []]
    out["command"] = spec.get("command") or ""
    return out


def secret_changes(row_secret: str, new: Mapping[str, Any]) -> bool:
    """Whether ``new`` gives a secret env other than the stored one (left out, None, keeps the stored one)."""
    given = new.get(SECRET)
    return given is not None and dict(given) != secret_store.decrypt_env(row_secret)


def differs(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """Whether an update changes anything of the component (then it is replaced)."""
    return _dumps(normalized(old)) != _dumps(normalized(new))


def demand(spec: Mapping[str, Any], prefer_node: str | None = None) -> Demand:
    """What placement must find room for."""
    req, aff = requirements(spec), affinity(spec)
    return Demand(
        component_id=spec["component_id"],
        cpu_cores=req["cpu_cores"],
        memory_mb=req["memory_mb"],
        gpu=req["gpu"],
        require_gpu=aff["require_gpu"],
        node_labels=aff["node_labels"],
        prefer_node=prefer_node,
    )


def row_fields(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The BusinessComponent columns that come from the spec (document 001 §4.2)."""
    req = requirements(spec)
    return {
        "component_name": spec.get("component_name") or spec["component_id"],
        "type": spec["type"],
        "image_url": spec.get("image_url"),
        "image_name": spec.get("image_name"),
        "command": spec.get("command") or "",
        "args": _dumps(list(spec.get("args") or [])),
        "working_dir": spec.get("working_dir"),
        "resource_requirements": _dumps(req),
        "environment_variables": _dumps(dict(spec.get("environment_variables") or {})),
        "config_files": _dumps(list(spec.get("config_files") or [])),
        "affinity": _dumps(affinity(spec)),
        "cpu_cores": req["cpu_cores"],
        "memory_mb": req["memory_mb"],
        "gpus": 1 if req["gpu"] else 0,
        # Left out (None): the stored secret env stays (a new row starts with none).
        **({} if spec.get(SECRET) is None else {SECRET: secret_store.encrypt_env(spec[SECRET])}),
    }


RUNTIME_RESET = {
    "container_id": None,
    "pid": None,
    "exit_code": None,
    "error_message": None,
    "cpu_percent": None,
    "memory_used_mb": None,
    "gpu_percent": None,
    "usage_at": None,
    "started_at": None,
}
"""What a new generation of a component starts without."""


def deploy_payload(
    business_id: str, spec: Mapping[str, Any], generation: int, grace_default: float, secret: str = ""
) -> dict[str, Any]:
    """The jobs.DEPLOY_COMPONENT body (messages.ComponentSpecSchema) of one generation; ``secret`` is the row's
    stored secret env, in plain here: dispatch.component_jobs seals it for the node before it leaves."""
    grace = spec.get("stop_grace_seconds")
    return {
        "business_id": business_id,
        "component_id": spec["component_id"],
        "component_name": spec.get("component_name") or spec["component_id"],
        "type": spec["type"],
        "generation": generation,
        "command": spec.get("command") or "",
        "args": list(spec.get("args") or []),
        "working_dir": spec.get("working_dir"),
        "image_url": spec.get("image_url"),
        "image_name": spec.get("image_name"),
        "resource_requirements": requirements(spec),
        "environment_variables": dict(spec.get("environment_variables") or {}),
        "config_files": [{"path": f["path"], "content": f["content"]} for f in spec.get("config_files") or []],
        "stop_grace_seconds": grace_default if grace is None else float(grace),
        # Only when there is one: without it the payload is already the wire's (messages.ComponentSpecSchema).
        **({"secret_env": plain} if (plain := secret_store.decrypt_env(secret)) else {}),
    }


def spec_json(data: Mapping[str, Any]) -> str:
    """The accepted request as stored in Business.spec: without any secret env (each row keeps its own)."""
    components = [{k: v for k, v in c.items() if k != SECRET} for c in data.get("components") or []]
    return json.dumps({**data, "components": components} if "components" in data else data, ensure_ascii=False)


def components_of(spec_text: str) -> dict[str, dict[str, Any]]:
    """component_id -> its spec, from Business.spec."""
    try:
        spec = json.loads(spec_text or "{}")
    except ValueError:
        return {}
    return {c["component_id"]: c for c in spec.get("components", []) if isinstance(c, dict) and "component_id" in c}
