"""metrics.collect and metrics.facts report sane figures."""

from __future__ import annotations

import os

from shared.heartbeat import FIELDS
from worker_agent import metrics


def test_collect_returns_every_heartbeat_field_with_sane_numbers() -> None:
    figures = metrics.collect(5.0, "node-a", "10.0.0.7", tasks_running=2)

    assert set(figures) == set(FIELDS) - {"ts"}
    assert figures["interval"] == 5.0
    assert (figures["hostname"], figures["ip"], figures["tasks_running"]) == ("node-a", "10.0.0.7", 2)
    for name in ("cpu_usage_percent", "memory_usage_percent", "disk_usage_percent"):
        assert 0.0 <= figures[name] <= 100.0, name
    assert figures["memory_usage_percent"] > 0
    assert figures["cpu_count"] == os.cpu_count()
    assert figures["memory_total_mb"] > 16
    assert figures["load1"] >= 0 and figures["load5"] >= 0 and figures["load15"] >= 0
    assert figures["net_bytes_sent"] >= 0 and figures["net_bytes_recv"] >= 0


def test_facts_describe_the_host() -> None:
    facts = metrics.facts()

    assert facts["os"] == "Linux"
    assert facts["kernel"] == os.uname().release
    assert facts["arch"] == os.uname().machine
    assert facts["cpu_count"] == os.cpu_count()
    assert facts["memory_total_mb"] > 16
    assert 0 < facts["boot_time"] < 4e9
    assert facts["python"].startswith("3.")
