"""Fault: hostile request bodies, sent to a real manager (gunicorn) on every route it has.

Every route that takes a body answers each hostile body 400 naming the problem (never a 500); every route
answers 413 to a body over the limit, with a Content-Length or chunked, instead of acting; the manager stays
healthy, none of its gunicorn workers dies and their memory stays bounded. The routes come from the Flask url
map, so a route added later is covered without touching this file.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
import requests

from manager_api import db
from manager_api.api.request_json import MAX_DEPTH, NOT_AN_OBJECT
from manager_api.app import close_app, create_app
from manager_api.body_limits import body_limit
from manager_api.config import Settings
from shared.api import JOIN_PATH, is_api_path
from shared.defaults import JOIN_MAX_BODY_BYTES, MAX_BODY_BYTES
from tests.e2e.harness import Manager, isolated_env
from tests.support import wait_until

pytestmark = pytest.mark.e2e

INVALID = "Invalid request format: "
TOO_LARGE = f"Request body too large (limit {MAX_BODY_BYTES} bytes)"
TOO_LARGE_TO_JOIN = f"Request body too large (limit {JOIN_MAX_BODY_BYTES} bytes)"
NO_SUCH_ID = "no-such-id"
MIB = 1024 * 1024


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # path arguments filled with NO_SUCH_ID
    rule: str

    def __str__(self) -> str:
        return f"{self.method} {self.rule}"


def every_route(workdir: Path) -> list[Route]:
    """Every (method, rule) of the app the manager serves, read from the url map of one built here."""
    # Its Redis client connects only when used, and nothing here uses it.
    app = create_app(Settings(db_path=str(workdir / "url-map.db"), redis_url="redis://127.0.0.1:1/0"))
    try:
        rules = list(app.url_map.iter_rules())
    finally:
        close_app(app)
        db.close()
    found = []
    for rule in rules:
        path = re.sub(r"<[^>]+>", NO_SUCH_ID, rule.rule)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            found.append(Route(method, path, rule.rule))
    return found


@dataclass(frozen=True)
class Hostile:
    name: str
    body: bytes
    says: str  # what the 400 of a route that takes a body says, after "Invalid request format: "


DEPTH = f"body nests deeper than {MAX_DEPTH} levels"
HOSTILE = [
    Hostile("arrays 100,000 deep", b"[" * 100_000 + b"]" * 100_000, DEPTH),
    Hostile("objects 100,000 deep", b'{"a":' * 100_000 + b"1" + b"}" * 100_000, DEPTH),
    Hostile("1 MiB of unclosed brackets", b"[{" * (MIB // 2 - 8), DEPTH),
    Hostile("one level too deep", b'{"name":' + b"[" * MAX_DEPTH + b"]" * MAX_DEPTH + b"}", DEPTH),
    Hostile("lone surrogate in a value", b'{"name": "a\\ud800b"}', "body holds a lone surrogate (\\ud800) in name"),
    Hostile(
        "lone surrogate in a key",
        b'{"a\\ud800b": 1}',
        "body holds a lone surrogate (\\ud800) in the key 'a\\ud800b' of body",
    ),
    Hostile(
        "lone low surrogate deep inside",
        b'{"task_groups": [{"tasks": [{"name": "ok", "config": {"command": "echo \\udfff"}}]}]}',
        "body holds a lone surrogate (\\udfff) in task_groups[0].tasks[0].config.command",
    ),
    Hostile(
        "surrogate pair reversed",
        b'{"facts": {"labels": {"k": "\\udc00\\ud800"}}}',
        "body holds a lone surrogate (\\udc00) in facts.labels.k",
    ),
    Hostile("UTF-8 encoded surrogate", b'{"name": "a\xed\xa0\x80b"}', "body is not valid UTF-8 text"),
    Hostile("not UTF-8", b'{"name": "\xff"}', "body is not valid UTF-8 text"),
    Hostile("NaN", b'{"interval": NaN}', "body holds NaN, which is not JSON"),
    Hostile("-Infinity", b'{"timeout": -Infinity}', "body holds -Infinity, which is not JSON"),
    Hostile("a number beyond a double", b'{"interval": 1e999}', "body holds the number 1e999, beyond a double's range"),
    Hostile("integer of 5000 digits", b'{"timeout": ' + b"9" * 5000 + b"}", NOT_AN_OBJECT.removeprefix(INVALID)),
    Hostile("truncated", b'{"name": "x", "task_groups": [', NOT_AN_OBJECT.removeprefix(INVALID)),
    Hostile("an array", b"[]", NOT_AN_OBJECT.removeprefix(INVALID)),
    Hostile("null", b"null", NOT_AN_OBJECT.removeprefix(INVALID)),
    Hostile("empty", b"", NOT_AN_OBJECT.removeprefix(INVALID)),
]

KNOWN_BODY_ROUTES = {
    "POST /api/agent/join",
    "POST /api/task/task_group",
    "POST /api/task/query",
    "POST /api/task/task_group/deploy",
    "POST /api/task/task_group/query",
    "POST /api/task/task_group/stop",
    "POST /api/tasks",
    "POST /api/schedules",
    "POST /api/businesses",
    "PUT /api/businesses/<business_id>",
    "PUT /api/nodes/<node_id>/labels",
    "PATCH /api/nodes/<node_id>/labels",
}
"""A floor for the url-map walk (it must find at least these), not the list it tests."""


LIVE_SLOTS_FREED_WITHIN = 10.0
"""Seconds a live page's 503 (no free stream slot) may last: the server frees a closed stream's slot at its next
write (every half second)."""


@dataclass
class Stack:
    manager: Manager
    headers: dict[str, str]
    body_routes: list[Route]
    other_routes: list[Route]

    def send(self, route: Route, body: bytes | Iterable[bytes]) -> requests.Response:
        deadline = time.monotonic() + LIVE_SLOTS_FREED_WITHIN
        while True:
            answer = requests.request(
                route.method, self.manager.url + route.path, data=body, headers=self.headers, timeout=60, stream=True
            )
            # A live page refused for want of a free stream slot (503 with Retry-After, by design: the browser
            # tries again) while the server has yet to notice that the streams this test closed are gone (at
            # its next pulse): retry as the browser would, within a deadline.
            refused = answer.status_code == 503 and "Retry-After" in answer.headers
            if not (refused and route.path.startswith("/console/live/") and time.monotonic() < deadline):
                break
            answer.close()
            time.sleep(0.2)
        if answer.headers.get("Content-Type", "").startswith("text/event-stream"):
            # A console live page: its answer goes on for half a minute; the status and headers are what counts.
            answer.close()
        else:
            answer.content  # noqa: B018  (read whole: the answer is checked as a whole)
        return answer


def chunked(body: bytes, size: int = 64 * 1024) -> Iterator[bytes]:
    """``body`` as a generator, which requests sends with Transfer-Encoding: chunked and no Content-Length."""
    for start in range(0, len(body), size):
        yield body[start : start + size]


def error_of(answer: requests.Response) -> str:
    assert answer.headers["Content-Type"] == "application/json", answer.text[:300]
    message = answer.json()["error"]
    assert isinstance(message, str)
    return message


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir: Path = tmp_path_factory.mktemp("hostile")
    manager = Manager(workdir, isolated_env(workdir))
    manager.start()
    try:
        token = (manager.db_path.parent / "join-token").read_text().strip()
        # The join token opens the join; without an API token every other route ignores it.
        found = Stack(manager, {"Authorization": f"Bearer {token}"}, [], [])
        for route in every_route(workdir):
            # A route that reads its body says so of one that is not JSON; the others do not look at it.
            answer = found.send(route, b"not json")
            # The web console's pages take forms, not JSON, and answer errors as pages (checked below).
            takes_body = is_api_path(route.path) and answer.status_code == 400 and error_of(answer) == NOT_AN_OBJECT
            (found.body_routes if takes_body else found.other_routes).append(route)
        names = {str(route) for route in found.body_routes}
        assert KNOWN_BODY_ROUTES <= names, KNOWN_BODY_ROUTES - names
        assert all(route.method in ("POST", "PUT", "PATCH") for route in found.body_routes), names
        yield found
    finally:
        assert manager.terminate() == 0, manager.output()[-3000:]
    assert "unhandled error" not in manager.output() and "Traceback" not in manager.output()


def workers(manager: Manager) -> list[psutil.Process]:
    """The gunicorn workers: the children of the manager's gunicorn master."""
    [master] = [p for p in psutil.Process(manager.pid).children() if "gunicorn" in " ".join(p.cmdline())]
    return master.children()


def over_the_join_cap(route: Route, body: bytes, answer: requests.Response) -> bool:
    """Whether ``body`` is over the join's own 64 KiB cap on ``route`` (checked to be answered 413 saying so)."""
    if route.path != JOIN_PATH or len(body) <= JOIN_MAX_BODY_BYTES:
        return False
    assert (answer.status_code, error_of(answer)) == (413, TOO_LARGE_TO_JOIN), str(route)
    return True


def send_every_hostile_body(stack: Stack) -> None:
    for hostile in HOSTILE:
        for route in stack.body_routes:
            answer = stack.send(route, hostile.body)
            if over_the_join_cap(route, hostile.body, answer):
                continue
            assert answer.status_code == 400, (hostile.name, str(route), answer.status_code, answer.text[:300])
            message = error_of(answer)
            assert message.startswith(INVALID) and hostile.says in message, (hostile.name, str(route), message)


@pytest.mark.parametrize("hostile", HOSTILE, ids=[h.name for h in HOSTILE])
def test_every_route_that_takes_a_body_answers_a_hostile_one_400_naming_the_problem(
    stack: Stack, hostile: Hostile
) -> None:
    for route in stack.body_routes:
        answer = stack.send(route, hostile.body)
        if over_the_join_cap(route, hostile.body, answer):
            continue
        assert answer.status_code == 400, (str(route), answer.status_code, answer.text[:300])
        message = error_of(answer)
        assert message.startswith(INVALID) and hostile.says in message, (str(route), message)
    # The routes that take no body do not read it: they answer as without one, never a 500.
    for route in stack.other_routes:
        answer = stack.send(route, hostile.body)
        assert answer.status_code < 500, (str(route), answer.status_code, answer.text[:300])
        if answer.status_code >= 400 and is_api_path(route.path):
            assert error_of(answer)
        elif answer.status_code >= 400:  # a console page: its error page, never a stack trace
            assert answer.headers["Content-Type"].startswith("text/html"), (str(route), answer.text[:300])
            assert "Traceback" not in answer.text, str(route)


def test_every_route_answers_413_to_a_body_over_the_limit_with_a_length_or_chunked(stack: Stack) -> None:
    for route in stack.body_routes + stack.other_routes:
        # Each route's own limit: the join's is smaller, a script's registration larger (body_limits).
        limit = body_limit(route.path, MAX_BODY_BYTES)
        huge = b" " * (limit + 1)
        for framing, body in (("Content-Length", huge), ("chunked", chunked(huge))):
            answer = stack.send(route, body)
            assert answer.status_code == 413, (str(route), framing, answer.status_code, answer.text[:300])
            if is_api_path(route.path):
                assert error_of(answer) == f"Request body too large (limit {limit} bytes)"
            else:  # a console page: its error page
                assert answer.headers["Content-Type"].startswith("text/html") and "Traceback" not in answer.text


def test_a_chunked_body_is_held_to_the_limit_to_the_byte(stack: Stack) -> None:
    query = Route("POST", "/api/task/query", "/api/task/query")

    def padded(size: int) -> bytes:
        body = b'{"name": "no-such-template"}'
        return body + b" " * (size - len(body))

    # Up to the limit, the body is read whole and answered (no such template): chunked as with a length.
    for framing, body in (("Content-Length", padded(MAX_BODY_BYTES)), ("chunked", chunked(padded(MAX_BODY_BYTES)))):
        answer = stack.send(query, body)
        assert answer.status_code == 404, (framing, answer.text[:300])
    # One byte more, or much more, is a 413, never the first 1 MiB read as if it were all.
    for size in (MAX_BODY_BYTES + 1, 3 * MAX_BODY_BYTES):
        answer = stack.send(query, chunked(padded(size)))
        assert (answer.status_code, error_of(answer)) == (413, TOO_LARGE), size


def test_a_route_that_takes_no_body_refuses_a_huge_one_instead_of_acting(stack: Stack) -> None:
    created = stack.manager.post(
        "/api/schedules", {"name": "hostile", "command": "true", "targets": ["*"], "interval": 3600}
    )
    assert created.status_code == 201, created.text
    path = f"/api/schedules/{created.json()['id']}"
    huge = b"{}" + b" " * MAX_BODY_BYTES
    for route in (Route("POST", f"{path}/pause", ""), Route("DELETE", path, "")):
        for body in (huge, chunked(huge)):
            assert stack.send(route, body).status_code == 413
    schedule = stack.manager.get(path)
    assert schedule.status_code == 200 and schedule.json()["paused"] is False, schedule.text
    # Without the huge body, the same calls act.
    assert stack.send(Route("POST", f"{path}/pause", ""), b"").json()["paused"] is True
    assert stack.send(Route("DELETE", path, ""), b"").status_code == 200
    assert stack.manager.get(path).status_code == 404


def test_the_manager_stays_healthy_and_its_memory_bounded(stack: Stack) -> None:
    before = {p.pid: p.memory_info().rss for p in workers(stack.manager)}
    send_every_hostile_body(stack)
    first = {p.pid: p.memory_info().rss for p in workers(stack.manager)}
    for _ in range(3):
        send_every_hostile_body(stack)
    last = {p.pid: p.memory_info().rss for p in workers(stack.manager)}
    # No worker died (a crash would have been replaced by a new pid), and the manager still answers and works.
    assert set(before) == set(first) == set(last), (before, last)
    assert stack.manager.healthy()
    valid = {"name": "after", "task_groups": [{"tasks": [{"name": "t", "config": {"command": "true"}}]}]}
    assert stack.manager.post("/api/task/task_group", valid).json() == {"status": "success"}
    wait_until(lambda: stack.manager.post("/api/task/query", {"name": "after"}).status_code == 200, what="the query")
    for pid in before:
        grown, regrown = (first[pid] - before[pid]) / MIB, (last[pid] - first[pid]) / MIB
        print(f"\nworker {pid}: {before[pid] / MIB:.1f} MiB, {grown:+.1f} after one round, {regrown:+.1f} after 3 more")
        # One round may warm caches and the allocator up; more rounds must not add to it (nothing kept).
        assert grown < 32 and regrown < 8, (pid, grown, regrown)


def test_a_large_body_a_route_does_not_read_leaves_the_kept_alive_connection_usable(stack: Stack) -> None:
    """gunicorn drains an unread body of at most 64 KiB before the next request; past that it closed the
    connection it had just answered "keep-alive" on, and the client's next request on it failed."""
    for size in (200 * 1024, MAX_BODY_BYTES - 1024):
        with requests.Session() as client:
            for _ in range(5):
                ignored = client.get(stack.manager.url + "/api/task/node", data=b"x" * size, timeout=30)
                assert ignored.status_code == 200 and ignored.headers.get("Connection") != "close"
                assert client.get(stack.manager.url + "/healthz", timeout=30).status_code == 200
