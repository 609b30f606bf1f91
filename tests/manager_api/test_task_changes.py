"""The per-process subscriber that wakes ``?wait`` callers (services/fleet_tasks/changes.py), on a real redis-server."""

from __future__ import annotations

import redis

from manager_api.services.fleet_tasks import changes
from shared import keys


def test_a_channel_names_its_task() -> None:
    assert changes.task_of(keys.task_changed_channel("t-1")) == "t-1"
    assert changes.task_of(keys.node_ring("n-1")) is None
    assert changes.task_of(keys.task_changed_channel("")) is None


def test_a_change_wakes_the_waiters_of_that_task_only(redis_client: redis.Redis) -> None:
    watcher = changes.of_process(redis_client)
    assert changes.of_process(redis_client) is watcher  # one per process and Redis server
    with watcher.watching("t-1") as mine, watcher.watching("t-2") as other:
        assert watcher.wait_subscribed(5)
        mine.clear()
        other.clear()  # subscribing wakes everyone once: whatever changed before is read again
        redis_client.publish(keys.task_changed_channel("t-1"), "1")
        assert mine.wait(5)
        assert not other.is_set()
