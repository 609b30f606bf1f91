"""Pure rules of businesses: the state derived from the components, error paths, spec diffs, job payloads."""

from __future__ import annotations

import pytest

from manager_api.api.schemas.businesses import field_path
from manager_api.services.businesses.specs import deploy_payload, differs
from manager_api.services.businesses.state import derive, failed_by_manager, offline_reason
from shared.messages import ComponentSpecSchema, dump

R, S, X = "running", "stopped", "removed"


@pytest.mark.parametrize(
    ("current", "components", "expected"),
    [
        ("deploying", [("pending", R), ("running", R)], "deploying"),
        ("deploying", [("running", R), ("running", R)], "running"),
        ("deploying", [("running", R), ("failed", R)], "failed"),
        ("running", [("running", R), ("failed", R)], "failed"),
        ("updating", [("running", R), ("stopping", X)], "updating"),  # a dropped one still stopping
        ("updating", [("running", R)], "running"),
        ("updating", [("starting", R), ("running", R)], "updating"),
        ("stopping", [("stopped", S), ("stopping", S)], "stopping"),
        ("stopping", [("stopped", S), ("failed", S)], "stopped"),
        ("stopped", [("stopped", S)], "stopped"),
        # failed stays failed: after a rollback even though what is left runs ...
        ("failed", [("running", R), ("stopped", S)], "failed"),
        ("failed", [("pending", R), ("running", R)], "failed"),
        # ... but a business that only lost a late node reads running again once everything runs.
        ("failed", [("running", R), ("running", R)], "running"),
    ],
)
def test_derive(current: str, components: list[tuple[str, str]], expected: str) -> None:
    assert derive(current, components).value == expected


def test_offline_reason_is_recognised_as_the_managers_guess() -> None:
    assert failed_by_manager(offline_reason("web-01"))
    assert not failed_by_manager("exited with code 1") and not failed_by_manager(None)


def test_field_path_writes_list_indexes_in_brackets() -> None:
    messages = {"components": {0: {"config_files": {1: {"path": ["bad"]}}}}}
    assert field_path(messages) == ("components[0].config_files[1].path", "bad")
    assert field_path({"_schema": ["whole body"]}) == ("body", "whole body")


def test_differs_ignores_defaults_but_sees_every_field() -> None:
    base = {"component_id": "a", "type": "process", "command": "x"}
    assert not differs(base, {**base, "resource_requirements": {"cpu_cores": 0, "memory_mb": 0, "gpu": False}})
    assert not differs(base, {**base, "affinity": {}, "environment_variables": {}, "args": []})
    for change in (
        {"command": "y"},
        {"environment_variables": {"A": "1"}},
        {"config_files": [{"path": "a", "content": ""}]},
        {"resource_requirements": {"memory_mb": 1}},
        {"affinity": {"node_labels": {"z": "1"}}},
        {"component_name": "other"},
        {"stop_grace_seconds": 1.0},
    ):
        assert differs(base, {**base, **change}), change


def test_deploy_payloads_pass_the_wire_schema() -> None:
    process = {"component_id": "a", "component_name": "a", "type": "process", "command": "sleep 1"}
    docker = {
        "component_id": "b",
        "component_name": "b",
        "type": "docker",
        "image_name": "redis:7",
        "image_url": "sftp://files/redis.tar",
        "resource_requirements": {"cpu_cores": 1.5, "memory_mb": 64, "gpu": True},
        "config_files": [{"path": "/etc/b.conf", "content": "x"}],
        "stop_grace_seconds": 2.0,
    }
    first = dump(ComponentSpecSchema, deploy_payload("biz", process, 1, 10.0))
    assert (first["generation"], first["stop_grace_seconds"], first["resource_requirements"]["gpu"]) == (1, 10.0, False)
    second = dump(ComponentSpecSchema, deploy_payload("biz", docker, 3, 10.0))
    assert (second["generation"], second["stop_grace_seconds"], second["image_url"]) == (
        3,
        2.0,
        "sftp://files/redis.tar",
    )
