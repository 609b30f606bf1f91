"""The per-process subscriber that wakes ``?wait`` callers (services/changes.py), on a real redis-server."""

from __future__ import annotations

import redis

from manager_api.services import changes
from shared import keys
from tests.support import RedisServer, wait_until


def test_a_change_wakes_the_waiters_of_that_task_or_workflow_only(redis_client: redis.Redis) -> None:
    watcher = changes.of_process(redis_client)
    assert changes.of_process(redis_client) is watcher  # one per process and Redis server
    with (
        watcher.watching(keys.task_changed_channel("t-1")) as mine,
        watcher.watching(keys.task_changed_channel("t-2")) as other,
        watcher.watching(keys.workflow_changed_channel("t-1")) as workflow,
    ):
        assert watcher.wait_subscribed(5)
        for event in (mine, other, workflow):
            event.clear()  # subscribing wakes everyone once: whatever changed before is read again
        redis_client.publish(keys.task_changed_channel("t-1"), "1")
        assert mine.wait(5)
        assert not other.is_set()
        assert not workflow.is_set()  # a task and a workflow may share an id: their channels differ
        redis_client.publish(keys.workflow_changed_channel("t-1"), "1")
        assert workflow.wait(5)
        assert not other.is_set()


def test_waiters_are_woken_when_redis_is_lost_and_again_once_it_is_back() -> None:
    server = RedisServer().start()
    back = RedisServer()
    back.port = server.port  # the same Redis, restarted
    try:
        client = redis.Redis.from_url(server.url)
        watcher = changes.of_process(client)
        with watcher.watching(keys.task_changed_channel("t-1")) as changed:
            assert watcher.wait_subscribed(5)
            changed.clear()
            server.stop()
            assert changed.wait(10)  # lost: read the database again, a change may have gone by
            back.start()
            wait_until(lambda: watcher.wait_subscribed(0.1), timeout=15, what="the subscriber back on Redis")
            changed.clear()
            client.publish(keys.task_changed_channel("t-1"), "1")
            assert changed.wait(5)
    finally:
        server.stop()
        back.stop()
