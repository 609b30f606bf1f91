"""The command report publisher on a real Redis: a short command's reports go out together, a long one's do not wait."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import redis as redis_lib
from redis.backoff import NoBackoff
from redis.retry import Retry

from shared import keys
from tests.support import free_port, wait_until
from worker_agent.fleet_commands.output import StreamCapture
from worker_agent.fleet_commands.publish import RUNNING_HOLD_SECONDS, CommandPublisher


def report(task_id: str, node_id: str, status: str, **extra: Any) -> dict[str, Any]:
    return {"task_id": task_id, "node_id": node_id, "status": status, "at": time.time(), "pid": 42, **extra}


def publisher(redis_client: redis_lib.Redis, node_id: str, tmp_path: Path, published: list[str]) -> CommandPublisher:
    return CommandPublisher(node_id, lambda: redis_client, tmp_path / "held", published.append)


def test_a_short_commands_running_and_final_reports_reach_a_blocked_reader_in_one_read(
    redis_client: redis_lib.Redis, redis_url: str, node_id: str, tmp_path: Path
) -> None:
    start = redis_client.xadd(keys.node_reports(node_id), {"v": "0"})
    reads: list[Any] = []
    reader = redis_lib.Redis.from_url(redis_url)

    # Blocked as the manager's duties are: each XREAD answer is one batch, applied in one transaction.
    def read() -> None:
        reads.append(reader.xread({keys.node_reports(node_id): start}, block=10_000))

    thread = threading.Thread(target=read)
    thread.start()
    wait_until(lambda: any(c["cmd"] == "xread" for c in redis_client.client_list()), what="the reader to block")

    published: list[str] = []
    out = publisher(redis_client, node_id, tmp_path, published)
    out.add(report("p-short", node_id, "running"))
    out.add(report("p-short", node_id, "succeeded", exit_code=0, finished_at=time.time(), stdout="hi\n"))
    out.publish()
    thread.join(10)
    reader.close()

    [[_stream, entries]] = reads[0]
    assert len(entries) == 2, "running and final reports in one read"
    assert published == ["p-short"] and len(out) == 0


def test_a_long_commands_running_report_goes_out_alone_once_held_long_enough(
    redis_client: redis_lib.Redis, node_id: str, tmp_path: Path
) -> None:
    out = publisher(redis_client, node_id, tmp_path, [])
    out.add(report("p-long", node_id, "running"))
    out.publish()
    assert redis_client.xlen(keys.node_reports(node_id)) == 0
    assert 0 < (out.hold_left() or 0) <= RUNNING_HOLD_SECONDS

    def sent() -> bool:
        out.publish()
        return redis_client.xlen(keys.node_reports(node_id)) == 1

    began = time.monotonic()
    wait_until(sent, timeout=5, interval=0.005, what="the held running report")
    assert time.monotonic() - began < RUNNING_HOLD_SECONDS + 1
    assert len(out) == 0 and out.hold_left() is None


def test_a_short_commands_last_lines_and_both_reports_go_in_one_transaction(
    redis_client: redis_lib.Redis, node_id: str, tmp_path: Path
) -> None:
    published: list[str] = []
    out = publisher(redis_client, node_id, tmp_path, published)
    capture = StreamCapture("stdout", 1024)
    capture.feed(b"hi\n")
    capture.close()
    out.add(report("p-one", node_id, "running"))
    final = report("p-one", node_id, "succeeded", exit_code=0, finished_at=time.time(), stdout="hi\n")
    redis_client.config_resetstat()  # the test's own Redis server

    assert out.flush([("p-one", capture)], [final])

    stats = redis_client.info("commandstats")
    assert stats["cmdstat_exec"]["calls"] == 1 and stats["cmdstat_multi"]["calls"] == 1
    assert [e[1][b"line"] for e in redis_client.xrange(keys.task_output("p-one", node_id))] == [b"hi"]
    assert redis_client.xlen(keys.node_reports(node_id)) == 2
    assert capture.pending() == [] and published == ["p-one"] and len(out) == 0


def test_a_round_redis_refused_keeps_its_lines_pending_and_its_final_on_disk(
    redis_client: redis_lib.Redis, node_id: str, tmp_path: Path
) -> None:
    dead = redis_lib.Redis(port=free_port(), socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))
    connection = {"now": dead}
    published: list[str] = []
    out = CommandPublisher(node_id, lambda: connection["now"], tmp_path / "held", published.append)
    capture = StreamCapture("stdout", 1024)
    capture.feed(b"kept\n")
    capture.close()
    final = report("p-down", node_id, "succeeded", exit_code=0, finished_at=time.time(), stdout="kept\n")

    assert not out.flush([("p-down", capture)], [final])
    assert capture.pending() == ["kept"] and len(out) == 0 and published == []
    assert out.load_held("p-down") == final  # survives an agent stopped meanwhile

    connection["now"] = redis_client
    assert out.flush([("p-down", capture)], [final])  # the runner offers them again
    assert [e[1][b"line"] for e in redis_client.xrange(keys.task_output("p-down", node_id))] == [b"kept"]
    assert redis_client.xlen(keys.node_reports(node_id)) == 1 and published == ["p-down"]
    dead.close()
