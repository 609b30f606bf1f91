"""Hostile bodies through the real app: NUL bytes refused naming the field on every route, the join's unknown
fields, the nesting limit to the level, lone surrogates, and the size limit on routes that take no body.

The fault suite (tests/faults/test_hostile_bodies.py) sends the same kind of bodies through real gunicorn.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask.testing import FlaskClient

from manager_api.api.request_json import MAX_DEPTH
from manager_api.models import AuditLog, Business, Node, Schedule, Template
from shared.api import JOIN_PATH, bearer
from shared.defaults import MAX_BODY_BYTES, PROTOCOL_VERSION
from worker_agent import metrics

from .business_helpers import business, component
from .conftest import JOIN_TOKEN, answer, join, node_secret, template_body

NUL = "\x00"
JOIN = {
    "node_id": "n1",
    "hostname": "web-01",
    "ip": "10.0.0.1",
    "interval": 5.0,
    "protocol": PROTOCOL_VERSION,
    "version": "0.1.0",
    "facts": {"labels": {"zone": "a"}},
    "node_secret": node_secret("n1"),
}


def _template(**task: Any) -> dict[str, Any]:
    body = template_body("tpl", ["echo hi"])
    body["task_groups"][0]["tasks"][0].update(task)
    return body


def _fleet_task(**fields: Any) -> dict[str, Any]:
    return {"name": "t", "command": "echo hi", "targets": ["*"], **fields}


def _schedule(**fields: Any) -> dict[str, Any]:
    return {"name": "s", "command": "echo hi", "targets": ["*"], "interval": 60, **fields}


def _join(**fields: Any) -> dict[str, Any]:
    return {**JOIN, **fields}


# (method, path, body, the field the 400 names); every body is valid but for its one NUL.
NUL_CASES: list[tuple[str, str, dict[str, Any], str]] = [
    ("POST", "/api/task/task_group", {**_template(), "name": f"tp{NUL}l"}, "name"),
    ("POST", "/api/task/task_group", _template(name=f"ta{NUL}sk"), "task_groups.0.tasks.0.name"),
    (
        "POST",
        "/api/task/task_group",
        _template(config={"command": f"echo{NUL}hi"}),
        "task_groups.0.tasks.0.config.command",
    ),
    (
        "POST",
        "/api/task/task_group",
        _template(config={"command": "echo", "host": f"vm{NUL}"}),
        "task_groups.0.tasks.0.config.host",
    ),
    ("POST", "/api/task/query", {"name": f"tpl{NUL}"}, "name"),
    ("POST", "/api/task/task_group/deploy", {"name": f"tpl{NUL}"}, "name"),
    ("POST", "/api/task/task_group/query", {"id": f"x{NUL}"}, "id"),
    ("POST", "/api/task/task_group/stop", {"id": f"x{NUL}"}, "id"),
    ("POST", "/api/tasks", _fleet_task(name=f"t{NUL}"), "name"),
    ("POST", "/api/tasks", _fleet_task(command=f"rm -rf /tmp/x{NUL}"), "command"),
    ("POST", "/api/tasks", _fleet_task(targets=["web-01", f"web{NUL}"]), "targets.1"),
    ("POST", "/api/tasks", _fleet_task(env={f"A{NUL}": "1"}), f"env.A{NUL}.key"),
    ("POST", "/api/tasks", _fleet_task(env={"A": f"1{NUL}"}), "env.A.value"),
    ("POST", "/api/tasks", _fleet_task(description=f"d{NUL}"), "description"),
    ("POST", "/api/tasks", _fleet_task(created_by=f"me{NUL}"), "created_by"),
    ("POST", "/api/schedules", _schedule(name=f"s{NUL}"), "name"),
    ("POST", "/api/schedules", _schedule(command=f"echo{NUL}"), "command"),
    ("POST", "/api/schedules", {**_schedule(cron=f"* * * * *{NUL}"), "interval": None}, "cron"),
    ("POST", "/api/businesses", business(component("a"), business_id=f"shop{NUL}"), "business_id"),
    ("POST", "/api/businesses", business(component("a"), business_name=f"shop{NUL}"), "business_name"),
    ("POST", "/api/businesses", business(component(f"a{NUL}")), "components[0].component_id"),
    ("POST", "/api/businesses", business(component("a", component_name=f"A{NUL}")), "components[0].component_name"),
    ("POST", "/api/businesses", business(component("a", command=f"run{NUL}")), "components[0].command"),
    ("POST", "/api/businesses", business(component("a", args=["-v", f"x{NUL}"])), "components[0].args[1]"),
    ("POST", "/api/businesses", business(component("a", working_dir=f"/srv{NUL}")), "components[0].working_dir"),
    (
        "POST",
        "/api/businesses",
        business(component("a", type="docker", image_name=f"nginx{NUL}")),
        "components[0].image_name",
    ),
    (
        "POST",
        "/api/businesses",
        business(component("a", environment_variables={"PORT": f"80{NUL}"})),
        "components[0].environment_variables.PORT.value",
    ),
    (
        "POST",
        "/api/businesses",
        business(component("a", affinity={"node_labels": {f"zo{NUL}ne": "a"}})),
        f"components[0].affinity.node_labels.zo{NUL}ne.key",
    ),
    (
        "POST",
        "/api/businesses",
        business(component("a", affinity={"node_labels": {"zone": f"a{NUL}"}})),
        "components[0].affinity.node_labels.zone.value",
    ),
    ("PUT", "/api/businesses/shop", business(component("a"), business_name=f"shop{NUL}"), "business_name"),
    ("PUT", "/api/nodes/n1/labels", {"labels": {f"ra{NUL}ck": "r7"}}, f"labels.ra{NUL}ck.key"),
    ("PUT", "/api/nodes/n1/labels", {"labels": {"rack": f"r7{NUL}"}}, "labels.rack.value"),
    ("PATCH", "/api/nodes/n1/labels", {"labels": {"rack": f"r7{NUL}"}}, "labels.rack.value"),
    ("POST", JOIN_PATH, _join(hostname=f"web-01{NUL}"), "hostname"),
    ("POST", JOIN_PATH, _join(node_id=f"n1{NUL}"), "node_id"),
    ("POST", JOIN_PATH, _join(ip=f"10.0.0.1{NUL}"), "ip"),
    ("POST", JOIN_PATH, _join(version=f"0.1{NUL}"), "version"),
    ("POST", JOIN_PATH, _join(node_secret=f"{node_secret('n1')}{NUL}"), "node_secret"),
    ("POST", JOIN_PATH, _join(facts={"labels": {f"zo{NUL}ne": "a"}}), f"facts.labels.zo{NUL}ne.key"),
    ("POST", JOIN_PATH, _join(facts={"labels": {"zone": f"a{NUL}"}}), "facts.labels.zone.value"),
]


@pytest.mark.parametrize(("method", "path", "body", "field"), NUL_CASES, ids=[f"{c[1]} {c[3]!r}" for c in NUL_CASES])
def test_a_nul_byte_is_a_400_naming_the_field(
    client: FlaskClient, method: str, path: str, body: dict[str, Any], field: str
) -> None:
    response = client.open(path, method=method, json=body, headers=bearer(JOIN_TOKEN))
    assert response.status_code == 400, response.get_json()
    message = response.get_json()["error"]
    assert message.startswith(f"Invalid request format: {field}: contains a NUL byte"), message
    for model in (Template, Schedule, Business, Node):
        assert model.select().count() == 0
    assert AuditLog.select().count() == 0


def test_the_same_bodies_without_the_nul_are_accepted(client: FlaskClient) -> None:
    # The matrix above is worth something only if each body fails on its NUL alone.
    join(client, "n0", "web-00", "10.0.0.9")
    for method, path, body, _field in NUL_CASES:
        clean = json.loads(json.dumps(body).replace("\\u0000", ""))
        response = client.open(path, method=method, json=clean, headers=bearer(JOIN_TOKEN))
        assert response.status_code not in (400, 500), (path, clean, response.get_json())


def test_a_nul_in_a_query_string_names_the_parameter(client: FlaskClient) -> None:
    response = client.get("/api/templates?name=a%00b")
    assert answer(response, 400)["error"] == "Invalid request format: name: contains a NUL byte"


def test_the_join_refuses_unknown_fields_and_takes_what_an_agent_sends(client: FlaskClient) -> None:
    response = client.post(JOIN_PATH, json=_join(role="admin"), headers=bearer(JOIN_TOKEN))
    assert answer(response, 400)["error"] == "Invalid request format: role: Unknown field."
    assert Node.select().count() == 0
    # What worker_agent/agent.py sends: these fields, with the facts metrics.facts() detects, and labels.
    body = _join(facts={**metrics.facts(), "labels": {"zone": "a"}})
    answer(client.post(JOIN_PATH, json=body, headers=bearer(JOIN_TOKEN)))
    assert answer(client.get("/api/nodes/n1"))["labels"] == {"zone": "a"}


def _nested(levels: int) -> str:
    """``{"name": [[...]]}``: ``levels`` levels of nesting, the object itself counted."""
    return '{"name": ' + "[" * (levels - 1) + "]" * (levels - 1) + "}"


def test_nesting_is_refused_one_level_past_the_limit(client: FlaskClient) -> None:
    at_limit = client.post("/api/task/query", data=_nested(MAX_DEPTH))
    assert answer(at_limit, 400)["error"] == "Invalid request format: name: Not a valid string."
    past = client.post("/api/task/query", data=_nested(MAX_DEPTH + 1))
    assert answer(past, 400)["error"] == f"Invalid request format: body nests deeper than {MAX_DEPTH} levels"


def test_brackets_and_escaped_quotes_inside_strings_do_not_nest(client: FlaskClient) -> None:
    name = 'say "[{' * 36  # 252 characters, 72 of them opening brackets, every one inside the string
    answer(client.post("/api/task/task_group", data=json.dumps(template_body(name, ["echo hi"]))))
    assert answer(client.post("/api/task/query", json={"name": name}))["name"] == name


def test_a_surrogate_pair_is_a_character_and_a_lone_one_is_refused(client: FlaskClient) -> None:
    # json.dumps writes 😀 as the escaped pair \ud83d\ude00: the decoder joins them into one character.
    answer(client.post("/api/task/task_group", data=json.dumps(template_body("smile 😀", ["echo 😀"]))))
    shown = answer(client.post("/api/task/query", json={"name": "smile 😀"}))
    assert shown["task_groups"][0]["tasks"][0]["config"]["command"] == "echo 😀"

    lone = json.dumps(template_body("smile", ["echo 😀"])).replace("\\ude00", "")
    message = answer(client.post("/api/task/task_group", data=lone), 400)["error"]
    assert (
        message
        == "Invalid request format: body holds a lone surrogate (\\ud83d) in task_groups[0].tasks[0].config.command"
    )
    in_facts = json.dumps(_join(facts={"labels": {"zone\ud800": "a"}}))
    message = answer(client.post(JOIN_PATH, data=in_facts, headers=bearer(JOIN_TOKEN)), 400)["error"]
    assert (
        message
        == "Invalid request format: body holds a lone surrogate (\\ud800) in the key 'zone\\ud800' of facts.labels"
    )
    assert Node.select().count() == 0 and Template.select().count() == 1


def test_json_in_utf16_is_still_read_and_nan_is_not_json(client: FlaskClient) -> None:
    # Flask's get_json read UTF-16 and UTF-32 as RFC 8259 allows; the strict reader keeps that.
    body = json.dumps(template_body("utf16", ["echo hi"]), ensure_ascii=False).encode("utf-16")
    answer(client.post("/api/task/task_group", data=body))
    nan = client.post("/api/tasks", data='{"name": "t", "command": "x", "targets": ["*"], "timeout": NaN}')
    assert answer(nan, 400)["error"] == "Invalid request format: body holds NaN, which is not JSON"
    # Valid JSON, but Python would read it as infinity: refused as NaN is (a float a schema took, a float param).
    huge = client.post("/api/tasks", data='{"name": "t", "command": "x", "targets": ["*"], "timeout": -1e999}')
    assert answer(huge, 400)["error"] == "Invalid request format: body holds the number -1e999, beyond a double's range"
    assert answer(client.post("/api/tasks", data='{"name": "t", "command": "x", "targets": ["*"], "x": 1.5e308}'), 400)[
        "error"
    ].startswith("Invalid request format: x: Unknown field")  # a large double that fits is read as the number


def test_a_route_that_takes_no_body_answers_413_to_a_huge_one_and_changes_nothing(client: FlaskClient) -> None:
    created = answer(client.post("/api/schedules", json=_schedule()), 201)
    huge = b" " * (MAX_BODY_BYTES + 1)
    for method, path in (
        ("POST", f"/api/schedules/{created['id']}/pause"),
        ("DELETE", f"/api/schedules/{created['id']}"),
    ):
        response = client.open(path, method=method, data=huge)
        assert answer(response, 413)["error"] == f"Request body too large (limit {MAX_BODY_BYTES} bytes)"
    assert answer(client.get(f"/api/schedules/{created['id']}"))["paused"] is False
    assert answer(client.get("/api/task/node", data=huge), 413)
    # A body of the limit exactly is read whole.
    padded = b'{"name": "nope"}'.ljust(MAX_BODY_BYTES)
    assert answer(client.post("/api/task/query", data=padded), 404)["error"] == "Business template not found"
