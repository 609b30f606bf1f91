"""Businesses end to end (document 001): a real manager, two real agents, real processes and containers.

The agents run docker components on a private podman service (tests/engines.py), fetch images over HTTP
and SFTP from servers the tests start, and advertise fixed capacities so placement's answers are known.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests

from tests.e2e.harness import Agent, Manager, isolated_env
from tests.engines import BUSYBOX_IMAGE_NAME, HttpFileServer, PodmanEngine, SshServer
from tests.support import pid_alive, wait_until

pytestmark = pytest.mark.e2e

INTERVAL = 0.5
CPU_CORES = 4
MEMORY_MB = 2048
ZONES = {"node-a": "a", "node-b": "b"}
# Each process component sleeps for its own odd number of seconds, so a test finds its processes (and
# the teardown kills them) by command line without touching anything else on the machine.
SLEEP_BASE = 7100
SLEEP_SECONDS = {str(SLEEP_BASE + i) for i in range(100)}


class Fleet:
    """The manager and its two agents, shared by this module's tests; each test uses its own business."""

    def __init__(self, workdir: Path, engine: PodmanEngine, sshd: SshServer) -> None:
        self.env = isolated_env(workdir)
        self.env.update(engine.env)
        self.manager = Manager(workdir, self.env)
        self.agents: dict[str, Agent] = {}
        for hostname, zone in ZONES.items():
            agent = Agent(workdir, self.env, self.manager, hostname, INTERVAL)
            agent.args += [
                "--label",
                f"zone={zone}",
                "--cpu-cores",
                str(CPU_CORES),
                "--memory-mb",
                str(MEMORY_MB),
                "--gpus",
                "0",
                "--docker-host",
                engine.docker_host,
                "--sftp-key",
                str(sshd.client_key_path),
                "--sftp-known-hosts",
                str(sshd.known_hosts_path),
            ]
            self.agents[hostname] = agent

    def start(self) -> None:
        self.manager.start()
        for agent in self.agents.values():
            agent.start()
        wait_until(
            lambda: all(status == 0 for status in self.node_status().values()) and len(self.node_status()) == 2,
            timeout=30,
            what=f"two online nodes\n{self.logs()}",
        )

    def stop(self) -> None:
        for agent in self.agents.values():
            if agent.alive():
                agent.terminate()
        if self.manager.alive():
            self.manager.terminate()

    def logs(self) -> str:
        parts = [f"--- manager\n{self.manager.output()[-3000:]}"]
        parts += [f"--- {name}\n{agent.output()[-3000:]}" for name, agent in self.agents.items()]
        return "\n".join(parts)

    def node_status(self) -> dict[str, int]:
        answer = self.manager.get("/api/task/node")
        assert answer.status_code == 200, answer.text
        return {n["hostname"]: n["status"] for n in answer.json()["nodes"]}

    # --- the business API -------------------------------------------------------------------------------

    def deploy(self, body: dict[str, Any], expect: int = 201, query: str = "") -> dict[str, Any]:
        answer = self.manager.post(f"/api/businesses{query}", body)
        assert answer.status_code == expect, f"{answer.status_code} {answer.text}\n{self.logs()}"
        return answer.json()

    def action(self, business_id: str, verb: str) -> dict[str, Any]:
        answer = self.manager.post(f"/api/businesses/{business_id}/{verb}")
        assert answer.status_code == 200, f"{verb}: {answer.status_code} {answer.text}"
        assert answer.json()["status"] == "success", answer.text
        return answer.json()

    def update(self, business_id: str, body: dict[str, Any]) -> dict[str, Any]:
        answer = requests.put(f"{self.manager.url}/api/businesses/{business_id}", json=body, timeout=10)
        assert answer.status_code == 200, f"update: {answer.status_code} {answer.text}"
        assert answer.json()["status"] == "success", answer.text
        return answer.json()

    def business(self, business_id: str) -> dict[str, Any]:
        answer = self.manager.get(f"/api/businesses/{business_id}")
        assert answer.status_code == 200, answer.text
        return answer.json()

    def components(self, business_id: str) -> dict[str, dict[str, Any]]:
        """GET /api/businesses/{id}/components, by component id."""
        answer = self.manager.get(f"/api/businesses/{business_id}/components")
        assert answer.status_code == 200, answer.text
        body = answer.json()
        rows = body["components"] if isinstance(body, dict) else body
        return {c["component_id"]: c for c in rows}

    def listed_ids(self) -> set[str]:
        answer = self.manager.get("/api/businesses")
        assert answer.status_code == 200, answer.text
        body = answer.json()
        rows = body["businesses"] if isinstance(body, dict) else body
        return {b["business_id"] for b in rows}

    def settled(self, business_id: str, status: str, **component_checks: Any) -> dict[str, Any] | None:
        """The business when it and every component read ``status`` (and pass extra checks), else None."""
        business = self.business(business_id)
        if business["status"] != status:
            return None
        if not all(c["status"] == status for c in business["components"]):
            return None
        for check in component_checks.values():
            if not all(check(c) for c in business["components"]):
                return None
        return business

    def wait_settled(self, business_id: str, status: str, timeout: float = 30, **checks: Any) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            return self.settled(business_id, status, **checks)

        try:
            return wait_until(probe, timeout=timeout, what=f"business {business_id} {status}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nlast: {self.business(business_id)}\n{self.logs()}") from None


@pytest.fixture(scope="module")
def fleet(
    tmp_path_factory: pytest.TempPathFactory, podman_engine: PodmanEngine, sshd_server: SshServer
) -> Iterator[Fleet]:
    fleet = Fleet(tmp_path_factory.mktemp("businesses"), podman_engine, sshd_server)
    try:
        fleet.start()
        yield fleet
    finally:
        fleet.stop()
        _kill_test_sleepers()
        podman_engine.remove_all_containers()


def _kill_test_sleepers() -> None:
    """Never leave this module's process components behind, whatever failed."""
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if len(cmdline) == 2 and cmdline[0].endswith("sleep") and cmdline[1] in SLEEP_SECONDS:
            try:
                proc.kill()
            except psutil.Error:
                pass


def sleepers(seconds: int) -> list[psutil.Process]:
    """Live `sleep <seconds>` processes (our process components' payloads)."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        cmdline = proc.info["cmdline"] or []
        if cmdline[-2:] == ["sleep", str(seconds)] and proc.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(proc)
    return found


def process_component(component_id: str, zone: str, seconds: int, **extra: Any) -> dict[str, Any]:
    return {
        "component_id": component_id,
        "component_name": f"{component_id} component",
        "type": "process",
        "command": f"exec sleep {seconds}",
        "resource_requirements": {"cpu_cores": 0.5, "memory_mb": 64, "gpu": False},
        "affinity": {"require_gpu": False, "node_labels": {"zone": zone}},
        **extra,
    }


def docker_component(component_id: str, zone: str, image_url: str, **extra: Any) -> dict[str, Any]:
    return {
        "component_id": component_id,
        "component_name": f"{component_id} container",
        "type": "docker",
        "image_url": image_url,
        "image_name": BUSYBOX_IMAGE_NAME,
        "resource_requirements": {"cpu_cores": 0.5, "memory_mb": 64, "gpu": False},
        "affinity": {"require_gpu": False, "node_labels": {"zone": zone}},
        **extra,
    }


def has_usage(component: dict[str, Any]) -> bool:
    usage = component.get("resource_usage") or {}
    return usage.get("memory_mb") is not None and usage["memory_mb"] > 0 and "cpu_percent" in usage


def environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


def payload_pid(component: dict[str, Any], seconds: int) -> int:
    """The pid of the component's `sleep` in the tree of the pid the manager shows."""
    pid = component["pid"]
    assert pid and pid_alive(pid), component
    tree = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    matches = [p.pid for p in tree if (p.cmdline() or [])[-2:] == ["sleep", str(seconds)]]
    assert len(matches) == 1, f"{component}: tree {[p.cmdline() for p in tree]}"
    return matches[0]


# --------------------------------------------------------------------------------------------------------
# 1. process business
# --------------------------------------------------------------------------------------------------------


def test_process_business_lifecycle(fleet: Fleet) -> None:
    biz = "proc-biz"
    web, worker, cron, cron_changed = SLEEP_BASE + 1, SLEEP_BASE + 2, SLEEP_BASE + 3, SLEEP_BASE + 4
    body = {
        "business_id": biz,
        "business_name": "process business",
        "components": [
            process_component(
                "web",
                "a",
                web,
                environment_variables={"GREETING": "hello web"},
                config_files=[{"path": "/etc/web/web.conf", "content": "port=8080\n"}],
            ),
            process_component("worker", "b", worker, environment_variables={"ROLE": "worker"}),
            process_component("cron", "b", cron),
        ],
    }
    created = fleet.deploy(body)
    assert created["status"] == "success" and created["business_id"] == biz, created
    assert biz in fleet.listed_ids()

    business = fleet.wait_settled(biz, "running", pid=lambda c: c.get("pid"), usage=has_usage)
    by_id = {c["component_id"]: c for c in business["components"]}
    assert {c: by_id[c]["hostname"] for c in by_id} == {"web": "node-a", "worker": "node-b", "cron": "node-b"}
    assert business["business_name"] == "process business"
    for key in ("created_at", "updated_at"):
        assert business[key], business
    for component in by_id.values():
        assert component["node_id"] and component["started_at"], component
        assert component["resource_usage"]["memory_mb"] > 0, component
    assert fleet.components(biz).keys() == by_id.keys()

    # The payloads run with their environment, and the config file is in the component's own files dir.
    pids = {"web": payload_pid(by_id["web"], web), "worker": payload_pid(by_id["worker"], worker)}
    pids["cron"] = payload_pid(by_id["cron"], cron)
    web_env = environ(pids["web"])
    assert web_env["GREETING"] == "hello web"
    assert web_env.get("CORRAL_BUSINESS_ID") == biz and web_env.get("CORRAL_COMPONENT_ID") == "web"
    assert environ(pids["worker"])["ROLE"] == "worker"
    web_cwd = Path(os.readlink(f"/proc/{pids['web']}/cwd"))
    assert (web_cwd / "etc/web/web.conf").read_text() == "port=8080\n"
    assert len(sleepers(web)) == 1

    # Restart: every component replaced by a new process; the old ones are gone.
    generations = {c: by_id[c].get("generation") for c in by_id}
    fleet.action(biz, "restart")
    business = fleet.wait_settled(
        biz, "running", new_pid=lambda c: c.get("pid") and c["pid"] != by_id[c["component_id"]]["pid"]
    )
    restarted = {c["component_id"]: c for c in business["components"]}
    for cid, seconds in (("web", web), ("worker", worker), ("cron", cron)):
        assert not pid_alive(pids[cid]), f"old {cid} still alive"
        pids[cid] = payload_pid(restarted[cid], seconds)
        assert len(sleepers(seconds)) == 1, f"{cid} runs twice"
        if generations[cid] is not None:
            assert restarted[cid]["generation"] > generations[cid]

    # Update with one changed component: only that one is replaced.
    body["components"][2] = process_component("cron", "b", cron_changed)
    fleet.update(biz, body)
    business = fleet.wait_settled(
        biz, "running", cron_new=lambda c: c["component_id"] != "cron" or c.get("pid") != restarted["cron"]["pid"]
    )
    updated = {c["component_id"]: c for c in business["components"]}
    assert updated["web"]["pid"] == restarted["web"]["pid"] and pid_alive(pids["web"])
    assert updated["worker"]["pid"] == restarted["worker"]["pid"] and pid_alive(pids["worker"])
    new_cron = payload_pid(updated["cron"], cron_changed)
    wait_until(lambda: not pid_alive(pids["cron"]), timeout=10, what="old cron gone")
    assert sleepers(cron) == []

    # Stop: business and components stopped, every process gone.
    fleet.action(biz, "stop")
    fleet.wait_settled(biz, "stopped")
    for pid in (pids["web"], pids["worker"], new_cron):
        wait_until(lambda pid=pid: not pid_alive(pid), timeout=10, what=f"pid {pid} gone")
    assert all(sleepers(s) == [] for s in (web, worker, cron, cron_changed))


# --------------------------------------------------------------------------------------------------------
# 2. docker business
# --------------------------------------------------------------------------------------------------------


def containers_of(engine: PodmanEngine, business_id: str) -> dict[str, Any]:
    """Containers (all states) labelled with the business, by id."""
    client = engine.client()
    try:
        found = client.containers.list(all=True, filters={"label": f"corral.business_id={business_id}"})
        return {c.id: c for c in found}
    finally:
        client.close()


def test_docker_business_lifecycle(
    fleet: Fleet, podman_clean: PodmanEngine, busybox_image_tar: Path, image_http: HttpFileServer
) -> None:
    biz = "docker-biz"
    url = image_http.url(busybox_image_tar.name)
    downloads_before = image_http.served.count(f"/{busybox_image_tar.name}")
    body = {
        "business_id": biz,
        "business_name": "docker business",
        "components": [
            docker_component(
                "web",
                "a",
                url,
                environment_variables={"GREETING": "hello container"},
                config_files=[{"path": "/etc/app/app.conf", "content": "listen=8080\n"}],
            ),
            docker_component("api", "b", url, environment_variables={"VERSION": "1"}),
        ],
    }
    fleet.deploy(body)
    business = fleet.wait_settled(biz, "running", container=lambda c: c.get("container_id"), usage=has_usage)
    by_id = {c["component_id"]: c for c in business["components"]}
    assert {c: by_id[c]["hostname"] for c in by_id} == {"web": "node-a", "api": "node-b"}
    assert image_http.served.count(f"/{busybox_image_tar.name}") > downloads_before, "image never downloaded"

    containers = containers_of(podman_clean, biz)
    assert set(containers) == {by_id["web"]["container_id"], by_id["api"]["container_id"]}, containers
    web = containers[by_id["web"]["container_id"]]
    assert web.status == "running"
    assert web.labels["corral.business_id"] == biz and web.labels["corral.component_id"] == "web"
    assert web.labels.get("corral.node_id") == by_id["web"]["node_id"]
    assert web.attrs["HostConfig"]["NanoCpus"] == 500_000_000
    assert web.attrs["HostConfig"]["Memory"] == 64 * 1024 * 1024
    assert "GREETING=hello container" in web.attrs["Config"]["Env"]
    assert web.exec_run(["cat", "/etc/app/app.conf"]).output == b"listen=8080\n"
    assert by_id["web"]["resource_usage"]["memory_mb"] > 0

    # Restart: both containers replaced, the old ones removed.
    old_ids = set(containers)
    fleet.action(biz, "restart")
    business = fleet.wait_settled(
        biz, "running", new_container=lambda c: c.get("container_id") and c["container_id"] not in old_ids
    )
    restarted = {c["component_id"]: c["container_id"] for c in business["components"]}
    wait_until(
        lambda: set(containers_of(podman_clean, biz)) == set(restarted.values()),
        timeout=15,
        what="only the restarted containers left",
    )

    # Update with one changed component (its environment): only that container is replaced.
    body["components"][1] = docker_component("api", "b", url, environment_variables={"VERSION": "2"})
    fleet.update(biz, body)
    business = fleet.wait_settled(
        biz,
        "running",
        api_new=lambda c: c["component_id"] != "api" or c.get("container_id") not in (None, restarted["api"]),
    )
    updated = {c["component_id"]: c["container_id"] for c in business["components"]}
    assert updated["web"] == restarted["web"]
    wait_until(
        lambda: set(containers_of(podman_clean, biz)) == set(updated.values()),
        timeout=15,
        what="the old api container removed",
    )
    api = containers_of(podman_clean, biz)[updated["api"]]
    assert "VERSION=2" in api.attrs["Config"]["Env"]

    # Stop: business stopped, no container of it left.
    fleet.action(biz, "stop")
    fleet.wait_settled(biz, "stopped")
    wait_until(lambda: containers_of(podman_clean, biz) == {}, timeout=15, what="containers removed")


# --------------------------------------------------------------------------------------------------------
# 3. the scheduler refuses what fits nowhere
# --------------------------------------------------------------------------------------------------------


def test_refused_business_creates_nothing(fleet: Fleet) -> None:
    too_big = process_component("hog", "a", SLEEP_BASE + 11)
    too_big["resource_requirements"]["memory_mb"] = MEMORY_MB * 4
    del too_big["affinity"]
    small = process_component("small", "a", SLEEP_BASE + 12)
    body = {"business_id": "refused-biz", "business_name": "too big", "components": [small, too_big]}

    answer = fleet.deploy(body, expect=409)
    assert answer["status"] == "error" and answer["error"] and answer["message"], answer
    reasons = answer["rejections"]["hog"]
    assert len(reasons) == len(ZONES), reasons
    for hostname in ZONES:
        assert any(r.startswith(hostname) or hostname in r for r in reasons), reasons
    assert all("memory" in r for r in reasons), reasons

    assert "refused-biz" not in fleet.listed_ids()
    assert fleet.manager.get("/api/businesses/refused-biz").status_code == 404
    assert sleepers(SLEEP_BASE + 12) == []

    # A dry run of what does fit answers a plan and writes nothing either.
    dry = {"business_id": "dry-biz", "business_name": "plan only", "components": [small]}
    plan = fleet.deploy(dry, expect=200, query="?dry_run=true")
    assert plan["status"] == "success"
    assert [(p["component_id"], p.get("hostname")) for p in plan["plan"]] == [("small", "node-a")], plan
    assert "dry-biz" not in fleet.listed_ids()
    assert fleet.manager.get("/api/businesses/dry-biz").status_code == 404
    assert sleepers(SLEEP_BASE + 12) == []


# --------------------------------------------------------------------------------------------------------
# 4. a restarted agent re-adopts its running container
# --------------------------------------------------------------------------------------------------------


def test_agent_restart_readopts_container(
    fleet: Fleet, podman_clean: PodmanEngine, busybox_image_tar: Path, image_http: HttpFileServer
) -> None:
    biz = "adopt-biz"
    body = {
        "business_id": biz,
        "business_name": "survives its agent",
        "components": [docker_component("db", "b", image_http.url(busybox_image_tar.name))],
    }
    fleet.deploy(body)
    business = fleet.wait_settled(biz, "running", container=lambda c: c.get("container_id"))
    container_id = business["components"][0]["container_id"]
    started_at = containers_of(podman_clean, biz)[container_id].attrs["State"]["StartedAt"]
    agent = fleet.agents["node-b"]

    for how in ("SIGKILL", "SIGTERM"):
        if how == "SIGKILL":
            agent.kill()
        else:
            assert agent.terminate() == 0, agent.output()[-3000:]
        assert containers_of(podman_clean, biz)[container_id].status == "running", f"container died with agent ({how})"
        restarted_at = time.time()
        agent.start()
        wait_until(lambda: fleet.node_status().get("node-b") == 0, timeout=20, what=f"node-b back after {how}")

        # Re-adopted, not recreated: same single container, never restarted, and the agent reports on it.
        def reported_again(restarted_at: float = restarted_at) -> dict[str, Any] | None:
            component = fleet.business(biz)["components"][0]
            fresh = _timestamp(component.get("updated_at")) > restarted_at
            return component if fresh and component["status"] == "running" else None

        try:
            component = wait_until(reported_again, timeout=20, what=f"a report after the {how} restart")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{fleet.logs()}") from None
        assert component["container_id"] == container_id
        containers = containers_of(podman_clean, biz)
        assert list(containers) == [container_id], containers
        assert containers[container_id].attrs["State"]["StartedAt"] == started_at
        assert fleet.business(biz)["status"] == "running"

    fleet.action(biz, "stop")
    fleet.wait_settled(biz, "stopped")
    wait_until(lambda: containers_of(podman_clean, biz) == {}, timeout=15, what="container removed")


def _timestamp(value: Any) -> float:
    """A manager timestamp (ISO 8601, or unix seconds) as unix seconds; 0 when absent."""
    if not value:
        return 0.0
    if isinstance(value, int | float):
        return float(value)
    from datetime import UTC, datetime

    parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


# --------------------------------------------------------------------------------------------------------
# 5. an image fetched over SFTP
# --------------------------------------------------------------------------------------------------------


def test_docker_image_over_sftp(
    fleet: Fleet, podman_clean: PodmanEngine, busybox_image_tar: Path, sshd_server: SshServer
) -> None:
    biz = "sftp-biz"
    body = {
        "business_id": biz,
        "business_name": "image over sftp",
        "components": [docker_component("tool", "a", sshd_server.sftp_url(busybox_image_tar))],
    }
    fleet.deploy(body)
    business = fleet.wait_settled(biz, "running", container=lambda c: c.get("container_id"))
    container_id = business["components"][0]["container_id"]
    assert containers_of(podman_clean, biz)[container_id].status == "running"
    assert "Accepted publickey" in sshd_server.log_path.read_text(), "the image did not come over SFTP"

    fleet.action(biz, "stop")
    fleet.wait_settled(biz, "stopped")
    wait_until(lambda: containers_of(podman_clean, biz) == {}, timeout=15, what="container removed")
