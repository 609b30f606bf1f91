"""The component manager's logic over the driver interface, with the mock driver: no process, no engine, no Redis."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.support import wait_until
from worker_agent.components.manager import ComponentManager
from worker_agent.components.records import record_key
from worker_agent.drivers.mock import MockDriver
from worker_agent.drivers.registry import DriverRegistry

from .components_support import spec, stop_request


class Harness:
    """A ComponentManager whose every component type runs on one MockDriver; its reports kept in a list."""

    def __init__(self, data_dir: Path, driver: MockDriver | None = None) -> None:
        self.driver = driver or MockDriver()
        self.reports: list[dict[str, Any]] = []
        self.made: list[str] = []
        registry = DriverRegistry({"process": self._make, "docker": self._make}, default="process")
        self.manager = ComponentManager(data_dir, "node-1", self.reports.append, drivers=registry, usage_interval=0)

    def _make(self) -> MockDriver:
        self.made.append("driver")
        return self.driver

    def settle(self) -> None:
        wait_until(self.manager.idle, what="the component work to finish", timeout=5)

    def statuses(self, component_id: str) -> list[str]:
        return [r["status"] for r in self.reports if r["component_id"] == component_id and r["resource_usage"] is None]


@pytest.fixture
def harness(tmp_path: Path) -> Harness:
    return Harness(tmp_path)


def test_a_deploy_starts_on_the_driver_of_its_type_and_reads_running(harness: Harness) -> None:
    assert harness.manager.deploy(spec("web", "serve"))["accepted"] is True
    harness.settle()
    assert harness.statuses("web") == ["starting", "running"]
    workload = harness.driver.workloads[record_key("biz-1", "web", 1)]
    assert workload.env["CORRAL_COMPONENT_ID"] == "web" and workload.env["CORRAL_BUSINESS_ID"] == "biz-1"
    rec = harness.manager.current("biz-1", "web")
    assert rec is not None and rec.container_id == workload.id


def test_an_exit_is_found_by_the_monitor_and_reported_failed_with_the_driver_message(harness: Harness) -> None:
    harness.manager.deploy(spec("web", "serve"))
    harness.settle()
    harness.driver.exit(record_key("biz-1", "web", 1), 3, "exited with code 3; stderr: boom")
    harness.manager.poll()
    last = harness.reports[-1]
    assert (last["status"], last["exit_code"], last["error_message"]) == (
        "failed",
        3,
        "exited with code 3; stderr: boom",
    )


def test_a_stop_goes_to_the_driver_with_its_grace_and_the_driver_lets_go(harness: Harness) -> None:
    harness.manager.deploy(spec("web", "serve"))
    harness.settle()
    harness.manager.stop(stop_request("web", grace_seconds=7))
    harness.settle()
    key = record_key("biz-1", "web", 1)
    assert harness.statuses("web")[-2:] == ["stopping", "stopped"]
    assert harness.driver.stopped[key].stop_grace == 7
    assert harness.reports[-1]["exit_code"] == -15
    assert ("forget", key) in harness.driver.calls


def test_a_failed_stop_keeps_stopping_with_the_reason_and_is_tried_again(harness: Harness) -> None:
    harness.manager.deploy(spec("web", "serve"))
    harness.settle()
    harness.driver.stop_error = "engine down"
    harness.manager.stop(stop_request("web"))
    harness.settle()
    last = harness.reports[-1]
    assert last["status"] == "stopping" and "engine down" in last["error_message"]
    harness.driver.stop_error = None
    wait_until(lambda: harness.manager.poll() or harness.statuses("web")[-1] == "stopped", what="the retried stop")


def test_a_start_error_fails_the_component_with_its_reason(harness: Harness) -> None:
    harness.driver.start_error = "image not found"
    harness.manager.deploy(spec("web", "serve"))
    harness.settle()
    assert harness.statuses("web") == ["starting", "failed"]
    assert harness.reports[-1]["error_message"] == "image not found"


def test_usage_comes_from_the_driver_stats(harness: Harness) -> None:
    harness.manager.deploy(spec("web", "serve"))
    harness.settle()
    harness.manager.poll()
    usage = [r["resource_usage"] for r in harness.reports if r["resource_usage"] is not None]
    assert usage and usage[-1] == {"cpu_percent": 1.5, "memory_mb": 20.0, "gpu_percent": None}


def test_after_a_restart_running_workloads_are_adopted_and_gone_ones_failed(tmp_path: Path) -> None:
    first = Harness(tmp_path)
    first.manager.deploy(spec("web", "serve"))
    first.manager.deploy(spec("db", "store"))
    first.settle()
    first.manager.close()
    driver = MockDriver()
    driver.leave("biz-1", "web", 1)  # still runs; db's workload is gone
    driver.leave("biz-1", "cache", 1)  # no record names it: adopted by its labels
    second = Harness(tmp_path, driver)
    second.manager.recover()
    second.settle()
    assert second.statuses("web") == ["running"]
    db = [r for r in second.reports if r["component_id"] == "db"]
    assert {r["status"] for r in db} == {"failed"}  # settled, and re-reported as every ended record after a restart
    assert db[0]["error_message"] == "ended while the agent was down"
    assert second.statuses("cache") == ["running"]
    saved = json.loads((tmp_path / "components.json").read_text())["components"]
    assert saved[record_key("biz-1", "cache", 1)]["state"] == "running"


def test_an_unreachable_engine_after_a_restart_fails_its_live_components(tmp_path: Path) -> None:
    first = Harness(tmp_path)
    first.manager.deploy(spec("web", "serve"))
    first.settle()
    driver = MockDriver()
    driver.unreachable = "connection refused"
    second = Harness(tmp_path, driver)
    second.manager.recover()
    assert second.reports[-1]["status"] == "failed"
    assert second.reports[-1]["error_message"] == "mock engine unreachable after an agent restart: connection refused"


def test_the_registry_makes_a_driver_on_first_use_only_and_sends_unknown_types_to_the_default(tmp_path: Path) -> None:
    harness = Harness(tmp_path)
    assert harness.made == []  # nothing deployed: no driver made (an agent without docker never loads its SDK)
    registry = harness.manager.drivers
    assert registry.of("no-such-type") is harness.driver
    assert registry.of("docker") is harness.driver
    assert registry.type_of("no-such-type") == "process"
    assert len(harness.made) == 2  # one per registered type, each once
