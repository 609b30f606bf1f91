"""Fault: one node's Redis credentials against another node's keys (issue 10, item 8). Each node has a Redis
user of its own (manager_api/services/nodes/redis_users.py): every read, write, delete and trim of another node's
queue, registries, jobs, heartbeat, summary, reports, output and acknowledgments is refused (NOPERM), and so
are the key-wide and administrative commands; the node still does its own work. A forgotten node's user is
gone and its open connections dropped."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis as redis_lib
import requests

from shared import api, keys
from shared.defaults import PROTOCOL_VERSION
from tests.e2e.harness import Agent, Manager, isolated_env
from tests.support import wait_until

pytestmark = pytest.mark.e2e

SHARED_ALLOWED = {"rq:workers", "rq:suspended", "rq:rl-keys"}
"""RQ's shared keys a node's user reaches (redis_users.rules says why): RQ's worker index (written by every
worker), the suspension flag and the rate limit index (read only)."""


@pytest.fixture
def manager(tmp_path: Path) -> Iterator[Manager]:
    started = Manager(tmp_path, isolated_env(tmp_path))
    started.start()
    yield started
    started.terminate()


def join_as(manager: Manager, data_dir: Path, hostname: str, node_id: str | None = None) -> dict[str, Any]:
    """The join answer of a node: an agent's (from its data directory) or a new simulated one's."""
    token = (manager.db_path.parent / "join-token").read_text().strip()
    body = {
        "node_id": node_id or (data_dir / "node-id").read_text().strip(),
        "hostname": hostname,
        "ip": "127.0.0.1",
        "interval": 0.5,
        "protocol": PROTOCOL_VERSION,
        "node_secret": (data_dir / "node-secret").read_text().strip() if node_id is None else "s" * 32,
    }
    answer = requests.post(manager.url + api.JOIN_PATH, json=body, headers=api.bearer(token), timeout=10)
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


def run_on(manager: Manager, hostname: str) -> dict[str, Any]:
    """A fleet command on one node, end to end (dispatch, agent, reports, output)."""
    ran = manager.post("/api/tasks?wait=20", {"name": "t", "command": f"echo on {hostname}", "targets": [hostname]})
    assert ran.status_code in (200, 201) and ran.json()["status"] == "completed", ran.text
    result: dict[str, Any] = ran.json()
    return result


def online(manager: Manager, *hostnames: str) -> bool:
    nodes = manager.get("/api/task/node").json()["nodes"]
    return {n["hostname"] for n in nodes if n["status"] == 0} >= set(hostnames)


def denied(call: Callable[[], Any]) -> bool:
    """Whether Redis refused ``call`` for want of permission (inside a script too)."""
    try:
        call()
    except redis_lib.exceptions.NoPermissionError:
        return True
    except redis_lib.exceptions.ResponseError as exc:  # a script's: "The user executing the script can't access..."
        return any(word in str(exc) for word in ("NOPERM", "no permissions", "can't access"))
    return False


READ = {
    "string": lambda r, k: r.get(k),
    "hash": lambda r, k: r.hgetall(k),
    "list": lambda r, k: r.lrange(k, 0, -1),
    "set": lambda r, k: r.smembers(k),
    "zset": lambda r, k: r.zrange(k, 0, -1),
    "stream": lambda r, k: r.xrange(k),
}
WRITE = {
    "string": lambda r, k: r.set(k, "x"),
    "hash": lambda r, k: r.hset(k, "x", "1"),
    "list": lambda r, k: r.lpush(k, "x"),
    "set": lambda r, k: r.sadd(k, "x"),
    "zset": lambda r, k: r.zadd(k, {"x": 1}),
    "stream": lambda r, k: r.xadd(k, {"x": "1"}, maxlen=0),  # XADD's own trim: every entry gone
}


def key_checks(as_a: redis_lib.Redis, key: str, kind: str) -> dict[str, Callable[[], Any]]:
    """Every way node A might touch ``key`` (of type ``kind``)."""
    checks = {
        "read": lambda: READ[kind](as_a, key),
        "write": lambda: WRITE[kind](as_a, key),
        "DEL": lambda: as_a.delete(key),
        "LPUSH": lambda: as_a.lpush(key, "x"),
        "EXPIRE": lambda: as_a.expire(key, 1),
        "EVAL": lambda: as_a.eval("return redis.call('DEL', KEYS[1])", 1, key),
        "EVAL undeclared": lambda: as_a.eval(f"return redis.call('TYPE', '{key}')", 0),
    }
    if kind == "stream":
        checks["XTRIM"] = lambda: as_a.xtrim(key, maxlen=0)
        checks["XDEL"] = lambda: as_a.xdel(key, "0-1")
    return checks


def global_checks(as_a: redis_lib.Redis, b_id: str) -> dict[str, Callable[[], Any]]:
    """The key-wide and administrative commands, and node B's channels."""
    return {
        "SCAN": lambda: as_a.scan(0),
        "KEYS": lambda: as_a.keys("*"),
        "RANDOMKEY": lambda: as_a.randomkey(),
        "SCRIPT FLUSH": lambda: as_a.script_flush(),
        "FUNCTION FLUSH": lambda: as_a.function_flush(),
        "FUNCTION LOAD": lambda: as_a.function_load("#!lua name=x\nredis.register_function('x', function() end)"),
        "FUNCTION DELETE": lambda: as_a.function_delete("x"),
        "CONFIG GET": lambda: as_a.config_get("dir"),
        "CONFIG SET": lambda: as_a.config_set("dir", "/tmp"),
        "FLUSHALL": lambda: as_a.flushall(),
        "FLUSHDB": lambda: as_a.flushdb(),
        "ACL WHOAMI": lambda: as_a.acl_whoami(),
        "ACL SETUSER": lambda: as_a.acl_setuser("evil", enabled=True),
        "CLIENT KILL": lambda: as_a.execute_command("CLIENT", "KILL", "USER", f"corral-node-{b_id}"),
        "CLIENT LIST": lambda: as_a.client_list(),
        "MONITOR": lambda: as_a.execute_command("MONITOR"),
        "PUBLISH B's ring": lambda: as_a.publish(keys.node_ring(b_id), "1"),
        "PUBLISH B's worker": lambda: as_a.publish(f"rq:pubsub:{b_id}.1", "{}"),
        "SUBSCRIBE B's ring": lambda: subscribe(as_a, keys.node_ring(b_id)),
    }


def subscribe(client: redis_lib.Redis, channel: str) -> None:
    pubsub = client.pubsub()
    try:
        pubsub.subscribe(channel)
        pubsub.get_message(timeout=1.0)  # the refusal comes as the reply
    finally:
        pubsub.close()


def test_one_nodes_credentials_reach_none_of_another_nodes_keys(manager: Manager, tmp_path: Path) -> None:
    began = time.monotonic()
    env = manager.env
    agents = [Agent(tmp_path, env, manager, name, 0.5) for name in ("node-a", "node-b")]
    for agent in agents:
        agent.start()
    try:
        wait_until(lambda: online(manager, "node-a", "node-b"), timeout=30, what="both nodes online")
        run_on(manager, "node-a")
        run_on(manager, "node-b")  # B now has job, result, execution and output keys, and reports
        a_id, b_id = ((agent.data_dir / "node-id").read_text().strip() for agent in agents)
        # A registered script's content (issue 17): every node may read it (by digest), none may change it.
        script = manager.post("/api/scripts", {"name": "acl", "version": "1", "interpreter": "sh", "body": "true\n"})
        script_key = keys.script_content(script.json()["digest"])
        admin = redis_lib.Redis.from_url(manager.redis_url(), decode_responses=True)
        [worker] = admin.keys(f"rq:worker:{b_id}.*[0-9]")  # gone with B's agent: kept as a hash to try
        agents[1].terminate()
        admin.hset(worker, "name", worker)
        # B's acknowledgments (a set the manager writes), and B's queue with a job waiting.
        admin.sadd(keys.node_prefix(b_id) + "acked", "0-1")
        admin.rpush(f"rq:queue:{keys.node_queue(b_id)}", keys.node_job_id(b_id, "waiting"))

        as_a = redis_lib.Redis.from_url(join_as(manager, agents[0].data_dir, "node-a")["redis_url"])
        others = {key: admin.type(key) for key in admin.scan_iter(count=1000) if a_id not in key}
        b_keys = {key for key in others if b_id in key}
        kinds = {
            "queue": f"rq:queue:{keys.node_queue(b_id)}",
            "started/finished registry": f"rq:finished:{keys.node_queue(b_id)}",
            "job": next(k for k in b_keys if k.startswith("rq:job:")),
            "result": next(k for k in b_keys if k.startswith("rq:results:")),
            "worker": worker,
            "heartbeat": keys.node_heartbeat(b_id),
            "summary": keys.node_summary(b_id),
            "reports": keys.node_reports(b_id),
            "output": next(k for k in b_keys if k.startswith(keys.task_output("", b_id))),
            "acked": keys.node_prefix(b_id) + "acked",
        }
        assert set(kinds.values()) <= b_keys, f"B lacks a kind of key: {set(kinds.values()) - b_keys}"

        allowed: list[str] = []
        checked = 0
        for key, kind in sorted(others.items()):
            if key in SHARED_ALLOWED:
                continue
            for what, check in key_checks(as_a, key, kind).items():
                if key == script_key and what in ("read", "EVAL undeclared"):
                    continue  # read only, on purpose (redis_users.rules): checked below
                checked += 1
                if not denied(check):
                    allowed.append(f"{what} {key}")
        for what, check in global_checks(as_a, b_id).items():
            checked += 1
            if not denied(check):
                allowed.append(what)
        print(
            f"\nnode A against {len(others)} keys not its own ({len(b_keys)} of node B, "
            f"{len(others) - len(b_keys)} shared, {len(SHARED_ALLOWED & set(others))} of them RQ's allowed ones) "
            f"and {len(global_checks(as_a, b_id))} key-wide or administrative commands: {checked} checks, "
            f"{checked - len(allowed)} denied, {len(allowed)} allowed, in {time.monotonic() - began:.1f} s"
        )
        assert allowed == [], f"node A may: {allowed}"
        assert script_key in others and as_a.get(script_key) == b"true\n"
        # Nothing of B's was changed by all that.
        assert admin.lrange(f"rq:queue:{keys.node_queue(b_id)}", 0, -1) == [keys.node_job_id(b_id, "waiting")]
        assert admin.xlen(keys.node_reports(b_id)) > 0
        # A still does its own work with the same user: its agent runs a command end to end.
        assert as_a.set(keys.node_prefix(a_id) + "probe", "1") and as_a.delete(keys.node_prefix(a_id) + "probe")
        run_on(manager, "node-a")
        as_a.close()
        admin.close()
    finally:
        for agent in agents:
            if agent.alive():
                agent.terminate()


def test_a_forgotten_nodes_credentials_are_refused_and_its_connections_dropped(manager: Manager) -> None:
    began = time.monotonic()
    joined = join_as(manager, manager.db_path.parent, "gone", node_id="c" * 32)
    as_c = redis_lib.Redis.from_url(joined["redis_url"])
    assert as_c.ping()
    client_id = as_c.client_id()
    admin = redis_lib.Redis.from_url(manager.redis_url(), decode_responses=True)
    assert any(c["id"] == str(client_id) for c in admin.client_list())

    forgotten = requests.delete(f"{manager.url}/api/nodes/{'c' * 32}", timeout=10)
    assert forgotten.status_code == 200, forgotten.text
    assert f"corral-node-{'c' * 32}" not in admin.acl_users()
    assert not any(c["id"] == str(client_id) for c in admin.client_list()), "its open connection dropped"
    with pytest.raises(redis_lib.exceptions.AuthenticationError):
        as_c.ping()  # redis-py reconnects: refused (WRONGPASS)
    with pytest.raises(redis_lib.exceptions.AuthenticationError):
        redis_lib.Redis.from_url(joined["redis_url"]).ping()
    print(f"\nforgotten node: user removed, connection {client_id} dropped, {time.monotonic() - began:.1f} s")
    as_c.close()
    admin.close()


def test_an_agent_whose_credentials_stop_working_joins_again(manager: Manager, tmp_path: Path) -> None:
    """As after an upgrade from the shared agent user, or a user lost with a Redis restart: refused, the agent
    joins again (which makes its user again) instead of retrying the same URL for ever."""
    agent = Agent(tmp_path, manager.env, manager, "node-u", 0.5)
    agent.start()
    try:
        wait_until(lambda: online(manager, "node-u"), timeout=30, what="the node online")
        node_id = (agent.data_dir / "node-id").read_text().strip()
        admin = redis_lib.Redis.from_url(manager.redis_url())
        began = time.monotonic()
        user = f"corral-node-{node_id}"
        admin.execute_command("ACL", "SETUSER", user, "resetpass", ">not-the-one-it-has")
        admin.execute_command("CLIENT", "KILL", "USER", user)
        wait_until(lambda: agent.output().count("joined http") >= 2, timeout=30, what="the agent to join again")
        run_on(manager, "node-u")
        print(f"\ncredentials refused -> joined again -> command run in {time.monotonic() - began:.1f} s")
        admin.close()
    finally:
        agent.terminate()
