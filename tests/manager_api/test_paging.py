"""One paging vocabulary on every list endpoint: page (from 1), page_size (1 to 1000), total/page/page_size."""

from __future__ import annotations

import pytest
import redis as redis_lib
from flask.testing import FlaskClient
from marshmallow import ValidationError

from manager_api.api.schemas.manual import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    AuditQuerySchema,
    PageQuerySchema,
    ScheduleListQuerySchema,
    older_page_size,
)
from manager_api.models import AuditLog
from manager_api.services import audit

from .business_helpers import add_node, business, component, deploy
from .conftest import answer, template_body
from .tasks_helpers import create

LISTS = [
    ("/api/tasks", "tasks"),
    ("/api/businesses", "businesses"),
    ("/api/schedules", "schedules"),
    ("/api/templates", "templates"),
    ("/api/deployments", "deployments"),
    ("/api/audit", "entries"),
]
"""Every list endpoint and the key of its items."""

OLDER_NAMES = {"/api/tasks": "size", "/api/audit": "limit"}
"""The list endpoints that took their page size under another name, still accepted beside ``page_size``."""


@pytest.fixture
def three_of_each(client: FlaskClient, redis_client: redis_lib.Redis) -> None:
    """Three tasks, businesses, schedules, templates and deployments (and the audit entries they make)."""
    add_node(client, redis_client, "n1", cpu=64, memory_mb=65536)
    for i in range(3):
        create(client, name=f"task-{i}", command="true", targets=["n1"], start=False)
        deploy(client, business(component("c"), business_id=f"shop-{i}"))
        answer(
            client.post("/api/schedules", json={"name": f"s{i}", "command": "x", "targets": ["*"], "interval": 60}), 201
        )
        answer(client.post("/api/task/task_group", json=template_body(f"app-{i}", ["/a"])))
        answer(client.post("/api/task/task_group/deploy", json={"name": f"app-{i}"}))


@pytest.mark.parametrize(("path", "key"), LISTS)
def test_every_list_pages_and_says_how(client: FlaskClient, three_of_each: None, path: str, key: str) -> None:
    total = AuditLog.select().count() if key == "entries" else 3
    first = answer(client.get(f"{path}?page=1&page_size=2"))
    assert (len(first[key]), first["total"], first["page"], first["page_size"]) == (2, total, 1, 2)
    last_page = -(-total // 2)
    last = answer(client.get(f"{path}?page={last_page}&page_size=2"))
    assert (len(last[key]), last["page"]) == (total - 2 * (last_page - 1), last_page)
    beyond = answer(client.get(f"{path}?page={last_page + 1}&page_size=2"))
    assert (beyond[key], beyond["total"]) == ([], total)
    # Pages never overlap: the order is total (ties broken by id).
    everything = answer(client.get(f"{path}?page_size=1000"))[key]
    paged = [
        item for page in range(1, last_page + 1) for item in answer(client.get(f"{path}?page={page}&page_size=2"))[key]
    ]
    assert paged == everything and len(everything) == total


@pytest.mark.parametrize(("path", "key"), LISTS)
@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("page_size=0", "page_size"),
        ("page_size=1001", "page_size"),
        ("page_size=many", "page_size"),
        ("page=0", "page"),
        # A row offset past SQLite's 64-bit integers failed the query (500): found by tests/e2e/test_schemathesis.py.
        ("page=161527537490276088779285247956090880&page_size=472", "page"),
        ("page=1000000001", "page"),
    ],
)
def test_bad_paging_is_a_400_naming_the_field(client: FlaskClient, path: str, key: str, query: str, field: str) -> None:
    body = answer(client.get(f"{path}?{query}"), 400)
    assert body["error"].startswith(f"Invalid request format: {field}: "), body
    assert field in body["errors"]


@pytest.mark.parametrize(("path", "key"), LISTS)
def test_every_list_takes_page_size_and_its_older_name_where_it_had_one(
    client: FlaskClient, three_of_each: None, path: str, key: str
) -> None:
    new = answer(client.get(f"{path}?page=2&page_size=2"))
    assert (len(new[key]), new["page"], new["page_size"]) == (min(2, new["total"] - 2), 2, 2)
    older = OLDER_NAMES.get(path)
    if older is not None:
        assert answer(client.get(f"{path}?page=2&{older}=2")) == new
        assert answer(client.get(f"{path}?page=2&{older}=2&page_size=2")) == new
    for unknown in {"size", "limit"} - {older}:  # never taken there: still an unknown parameter
        assert unknown in answer(client.get(f"{path}?{unknown}=2"), 400)["errors"]


def test_page_query_schemas_share_one_default_and_older_name_mechanism() -> None:
    class Query(PageQuerySchema):
        PAGE_SIZE_DEFAULT = 7
        count = older_page_size()

    assert Query().load({}) == {"page": 1, "page_size": 7}
    assert Query().load({"count": "3"}) == Query().load({"page_size": "3"}) == {"page": 1, "page_size": 3}
    assert Query().load({"count": "3", "page_size": "3", "page": "2"}) == {"page": 2, "page_size": 3}
    with pytest.raises(ValidationError) as both:
        Query().load({"count": "3", "page_size": "4"})
    assert both.value.messages == {"count": ["count is the old name of page_size: give one of them"]}
    with pytest.raises(ValidationError) as bad:
        Query().load({"count": "0"})
    assert list(bad.value.messages) == ["count"]
    assert PageQuerySchema().load({}) == {"page": 1, "page_size": DEFAULT_PAGE_SIZE}
    assert ScheduleListQuerySchema().load({})["page_size"] == MAX_PAGE_SIZE
    assert AuditQuerySchema().load({})["page_size"] == 100


def test_tasks_keep_their_older_size_parameter_and_key(client: FlaskClient, redis_client: redis_lib.Redis) -> None:
    add_node(client, redis_client, "n1")
    for i in range(3):
        create(client, name=f"task-{i}", command="true", targets=["n1"], start=False)
    old = answer(client.get("/api/tasks?page=1&size=2"))
    assert (len(old["tasks"]), old["size"], old["page_size"], old["total"]) == (2, 2, 2, 3)
    new = answer(client.get("/api/tasks?page_size=1"))
    assert (len(new["tasks"]), new["size"], new["page_size"]) == (1, 1, 1)
    assert answer(client.get("/api/tasks?size=2&page_size=2"))["page_size"] == 2
    both = answer(client.get("/api/tasks?size=2&page_size=3"), 400)
    assert both["error"].startswith("Invalid request format: size: ") and "size" in both["errors"]
    assert answer(client.get("/api/tasks?size=0"), 400)["error"].startswith("Invalid request format: size: ")
    bare = answer(client.get("/api/tasks"))
    assert (bare["page"], bare["page_size"], bare["size"]) == (1, 20, 20)


def test_audit_keeps_limit_and_its_default(client: FlaskClient) -> None:
    for i in range(105):
        audit.record("tester", "test.entry", f"t{i}")
    bare = answer(client.get("/api/audit"))
    # A bare call answers what it always did: the newest 100.
    assert (len(bare["entries"]), bare["page_size"], bare["total"]) == (100, 100, 105)
    assert bare["entries"][0]["target"] == "t104"
    limited = answer(client.get("/api/audit?limit=3"))
    assert [e["target"] for e in limited["entries"]] == ["t104", "t103", "t102"] and limited["page_size"] == 3
    second = answer(client.get("/api/audit?limit=3&page=2"))
    assert [e["target"] for e in second["entries"]] == ["t101", "t100", "t99"]
    newest_four = answer(client.get("/api/audit?limit=4"))["entries"]
    assert answer(client.get("/api/audit?page_size=2&page=2"))["entries"] == newest_four[2:4]
    assert answer(client.get("/api/audit?limit=0"), 400)["error"].startswith("Invalid request format: limit: ")
    assert answer(client.get("/api/audit?limit=2&page_size=3"), 400)["errors"].keys() == {"limit"}


def test_schedules_answer_every_schedule_unless_asked_for_a_page(client: FlaskClient) -> None:
    # GET /api/schedules answered every schedule before it paged; clients find a schedule by name in it.
    for i in range(25):
        answer(
            client.post("/api/schedules", json={"name": f"s{i:02}", "command": "x", "targets": ["*"], "interval": 9}),
            201,
        )
    bare = answer(client.get("/api/schedules"))
    assert (len(bare["schedules"]), bare["total"], bare["page_size"]) == (25, 25, 1000)
    assert [s["name"] for s in bare["schedules"]] == [f"s{i:02}" for i in range(25)]
    assert [s["name"] for s in answer(client.get("/api/schedules?page=3&page_size=10"))["schedules"]] == [
        f"s{i}" for i in range(20, 25)
    ]
