"""Rate and size limits (issue 15), on a real manager: gunicorn with 2 workers, its own redis-server, real HTTP.

Each test sets the limits by the manager's flags, small enough that a Python client exceeds them at once."""

from __future__ import annotations

import http.client
import re
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import redis as redis_lib
import requests

from shared import api
from shared.defaults import JOIN_MAX_BODY_BYTES, PROTOCOL_VERSION
from tests.e2e.harness import BIN, Agent, Manager, isolated_env
from tests.support import RedisServer, wait_until

pytestmark = pytest.mark.e2e

TOKEN_A = {"Authorization": "Bearer token-of-a-flooding-script"}
TOKEN_B = {"Authorization": "Bearer token-of-a-well-behaved-one"}


def fresh_get(manager: Manager, path: str, headers: dict[str, str]) -> requests.Response:
    """A GET on a connection of its own (Connection: close), so that successive calls land on either worker."""
    return requests.get(manager.url + path, headers={**headers, "Connection": "close"}, timeout=10)


def started(tmp_path: Path, *flags: str) -> Manager:
    manager = Manager(tmp_path, isolated_env(tmp_path), ["--workers", "2", *flags])
    manager.start()
    return manager


def test_a_flooding_token_gets_429_while_another_token_and_healthz_go_on(tmp_path: Path) -> None:
    manager = started(tmp_path, "--rate-limit", "20/second")
    try:
        stop = threading.Event()
        good: list[int] = []

        def well_behaved() -> None:  # a few calls a second, as an operator's script makes
            while not stop.wait(0.05):
                good.append(manager.get("/api/templates", headers=TOKEN_B).status_code)
                good.append(manager.get("/healthz", headers=TOKEN_A).status_code)

        other = threading.Thread(target=well_behaved)
        other.start()
        with requests.Session() as session, ThreadPoolExecutor(4) as pool:
            flood = list(
                pool.map(lambda _: session.get(manager.url + "/api/templates", headers=TOKEN_A, timeout=10), range(400))
            )
        stop.set()
        other.join(10)
        refused = [answer for answer in flood if answer.status_code == 429]
        assert refused and {a.status_code for a in flood} == {200, 429}
        first = refused[0]
        assert int(first.headers["Retry-After"]) >= 1
        assert first.headers["X-RateLimit-Limit"] == "20" and first.headers["X-RateLimit-Remaining"] == "0"
        assert re.fullmatch(
            r"rate limit exceeded: 20 per 1 second for this token; retry after \d+ s", first.json()["error"]
        )
        assert good and set(good) == {200}, good
        # The window passes and the flooding token is served again.
        wait_until(
            lambda: fresh_get(manager, "/api/templates", TOKEN_A).status_code == 200,
            timeout=int(first.headers["Retry-After"]) + 3,
            interval=0.2,
            what="the window to pass",
        )
        # The flooding token is not a secret kept in the log: its hash prefix is, once a minute per worker.
        assert "token-of-a-flooding-script" not in manager.output()
        assert "over its rate limit (20 per 1 second)" in manager.output()
    finally:
        assert manager.terminate() == 0


def refusing_workers(manager: Manager) -> set[str]:
    """The pids of the workers that refused a token (each logs its first refusal of a key once, with its pid)."""
    return set(re.findall(r"\[(\d+)\] manager_api\.api\.rate_limits: token:", manager.output()))


def test_a_named_token_with_a_rate_of_its_own_is_held_to_it(tmp_path: Path) -> None:
    """A token's ``rateLimit`` replaces the manager's --rate-limit for it alone; the others keep the default."""
    manager = started(tmp_path, "--rate-limit", "500/second", "--api-token", "the-admin")
    admin = api.bearer("the-admin")
    try:
        made = manager.post("/api/tokens", {"name": "slow", "role": "viewer", "rateLimit": "3/minute"}, headers=admin)
        assert made.status_code == 201 and made.json()["rateLimit"] == "3/minute", made.text
        slow = api.bearer(made.json()["token"])
        answers = [fresh_get(manager, "/api/templates", slow) for _ in range(5)]
        assert [a.status_code for a in answers] == [200, 200, 200, 429, 429]
        assert answers[3].headers["X-RateLimit-Limit"] == "3"
        assert answers[3].json()["error"].startswith("rate limit exceeded: 3 per 1 minute for this token")
        # Another token (the admin's) is counted apart, against the manager's 500/second.
        assert [fresh_get(manager, "/api/templates", admin).status_code for _ in range(10)] == [200] * 10
        assert fresh_get(manager, "/api/templates", admin).headers["X-RateLimit-Limit"] == "500"
    finally:
        assert manager.terminate() == 0


def test_the_count_is_shared_by_both_workers(tmp_path: Path) -> None:
    manager = started(tmp_path, "--rate-limit", "10/minute")
    try:
        answers: list[requests.Response] = []

        def both_refused() -> bool:
            answers.append(fresh_get(manager, "/api/templates", TOKEN_A))
            return len(refusing_workers(manager)) == 2

        # New connections until both workers have refused the token (either may take most of them).
        wait_until(both_refused, timeout=40, interval=0, what="both workers refusing the token")
        accepted = [a for a in answers if a.status_code == 200]
        # One count for the manager: per worker it would take up to 20 (10 in each).
        assert len(accepted) == 10, len(accepted)
        assert {a.status_code for a in answers} == {200, 429}
        assert 1 <= int(answers[-1].headers["Retry-After"]) <= 60
    finally:
        assert manager.terminate() == 0


def test_rate_limit_off(tmp_path: Path) -> None:
    manager = started(tmp_path, "--rate-limit", "off", "--join-rate-limit", "off")
    try:
        with requests.Session() as session, ThreadPoolExecutor(4) as pool:
            answers = list(
                pool.map(lambda _: session.get(manager.url + "/api/templates", headers=TOKEN_A, timeout=10), range(600))
            )
        assert {a.status_code for a in answers} == {200}
        assert "X-RateLimit-Limit" not in answers[0].headers
    finally:
        assert manager.terminate() == 0


def join_token(manager: Manager) -> dict[str, str]:
    return api.bearer((manager.db_path.parent / "join-token").read_text().strip())


def post_join_from(manager: Manager, source: str, headers: dict[str, str]) -> int:
    """POST an empty join from the loopback address ``source`` (all of 127.0.0.0/8 reaches the manager)."""
    connection = http.client.HTTPConnection("127.0.0.1", manager.port, timeout=10, source_address=(source, 0))
    try:
        connection.request("POST", api.JOIN_PATH, body=b"{}", headers=headers)
        return connection.getresponse().status
    finally:
        connection.close()


def test_a_join_flood_from_one_address_is_paced_and_a_real_agent_still_joins(tmp_path: Path) -> None:
    # Ten-second windows: the agent's first try (as it starts, while its address is kept over the limit) lands
    # in a full window, where with one-second ones it could land in the few ms before the flood fills one.
    manager = started(tmp_path, "--join-rate-limit", "5/10 seconds")
    try:
        headers = join_token(manager)
        answers = [manager.post(api.JOIN_PATH, {}, headers=headers) for _ in range(30)]
        assert {a.status_code for a in answers} == {400, 429}  # counted before its body is looked at
        refused = next(a for a in answers if a.status_code == 429)
        assert re.fullmatch(
            r"rate limit exceeded: 5 per 10 seconds for this address; retry after \d+ s", refused.json()["error"]
        )
        # The API's own limit is apart: the flood did not spend it.
        assert manager.get("/api/templates").status_code == 200
        agent = Agent(tmp_path, isolated_env(tmp_path), manager, "paced", 0.5)
        stop = threading.Event()
        flood_codes: list[int] = []

        def flood() -> None:
            # Another address floods throughout; this one (the agent's) is kept over its limit until the agent
            # has been answered 429, then left alone, so that its retry after Retry-After can succeed.
            while not stop.is_set():
                flood_codes.append(post_join_from(manager, "127.0.0.2", headers))
                if "manager paces joins" not in agent.output():
                    post_join_from(manager, "127.0.0.1", headers)

        flooder = threading.Thread(target=flood)
        flooder.start()
        try:
            agent.start()
            wait_until(
                lambda: [n for n in manager.get("/api/nodes").json()["nodes"] if n["hostname"] == "paced"],
                timeout=60,
                what="the paced agent joined",
            )
            log = agent.output()
            assert log.count("manager paces joins") == 1, log[-3000:]  # logged once, not per try
            assert "retrying after it (with jitter)" in log
            assert 429 in flood_codes
        finally:
            stop.set()
            flooder.join(10)
            assert agent.terminate() == 0
    finally:
        assert manager.terminate() == 0


def test_body_caps_the_join_small_and_every_route_by_max_body_bytes(tmp_path: Path) -> None:
    manager = started(tmp_path, "--max-body-bytes", "100000")
    try:
        body = {
            "node_id": "a" * 32,
            "hostname": "big",
            "ip": "127.0.0.1",
            "interval": 5.0,
            "protocol": PROTOCOL_VERSION,
            "node_secret": "b" * 32,
            "facts": {"pad": "x" * JOIN_MAX_BODY_BYTES},
        }
        too_big = manager.post(api.JOIN_PATH, body, headers=join_token(manager))
        assert too_big.status_code == 413
        assert too_big.json() == {"error": f"Request body too large (limit {JOIN_MAX_BODY_BYTES} bytes)"}
        # As large a body elsewhere is read and judged (no template of that name), one over the flag is not.
        assert manager.post("/api/task/query", {"name": "x" * 70_000}).status_code == 400
        over = manager.post("/api/task/query", {"name": "x" * 100_001})
        assert over.status_code == 413 and over.json()["error"] == "Request body too large (limit 100000 bytes)"
    finally:
        assert manager.terminate() == 0


def test_with_redis_down_the_limits_fall_back_to_each_worker_and_come_back(tmp_path: Path) -> None:
    # The manager's Redis given by URL with a password, as an operator's: the counts go there.
    server = RedisServer(password="limits-pw").start()
    manager = started(tmp_path, "--redis-url", server.url, "--rate-limit", "20/second")
    try:
        assert 429 in {fresh_get(manager, "/api/templates", TOKEN_A).status_code for _ in range(30)}
        counted = redis_lib.Redis.from_url(server.url).keys("*corral:ratelimit*")
        assert counted, "no counts in the manager's Redis"
        server.stop()
        # No 500 and no wait: a well-behaved token goes on; the flood is still refused, counted by each worker.
        assert fresh_get(manager, "/api/templates", TOKEN_B).status_code == 200
        down = [fresh_get(manager, "/api/templates", TOKEN_A).status_code for _ in range(60)]
        assert set(down) == {200, 429}, down
        assert fresh_get(manager, "/api/templates", TOKEN_B).status_code == 200
        # One warning per worker, not one per request.
        assert 1 <= manager.output().count("Rate limit storage unreachable") <= 2
        again = RedisServer(password="limits-pw")
        again.port = server.port
        server = again.start()
        wait_until(
            lambda: (
                fresh_get(manager, "/api/templates", TOKEN_B) and "Rate limit storage recovered" in manager.output()
            ),
            timeout=40,
            interval=0.2,
            what="the limiter back on Redis",
        )
    finally:
        assert manager.terminate() == 0
        server.stop()


def test_the_cli_says_plainly_that_it_was_rate_limited(tmp_path: Path) -> None:
    manager = started(tmp_path, "--rate-limit", "2/minute")
    try:
        env = isolated_env(tmp_path) | {"CORRAL_URL": manager.url, "CORRAL_API_TOKEN": "cli-token"}
        runs = [
            subprocess.run([str(BIN / "corral"), "nodes"], env=env, capture_output=True, text=True, timeout=30)
            for _ in range(3)
        ]
        assert [run.returncode for run in runs[:2]] == [0, 0], runs
        refused = runs[2]
        assert refused.returncode != 0 and refused.stdout == ""
        assert re.search(
            r"the manager refused the call: rate limit exceeded: 2 per 1 minute for this token; retry after \d+ s "
            r"\(too many calls: wait and try again\) \(HTTP 429\)",
            refused.stderr,
        ), refused.stderr
        assert "cli-token" not in refused.stderr
    finally:
        assert manager.terminate() == 0
