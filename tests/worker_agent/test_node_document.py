"""The node document of document 003 §5.1.1 and the node's tags: collected by the agent, sent with its join,
shown and queried by the manager."""

from __future__ import annotations

import ipaddress
import os
import platform
from pathlib import Path

import psutil
import pytest
import requests

from shared.paths import local_join_token_path
from tests.support import wait_until
from tests.worker_agent.conftest import ManagerProcess
from tests.worker_agent.test_agent import AgentProcess, agents  # noqa: F401 (the fixture)
from worker_agent import metrics
from worker_agent.tags import parse_tags


def test_the_node_document_has_every_field_with_sane_values() -> None:
    document = metrics.node_document("node-a", "http://10.0.0.7:8081", ["appserver", "ssd"])

    assert set(document) == {"hostname", "agentAddress", "os", "memory", "networks", "disks", "tags"}
    assert (document["hostname"], document["agentAddress"]) == ("node-a", "http://10.0.0.7:8081")
    assert document["tags"] == ["appserver", "ssd"]
    assert document["os"]["name"] == platform.system() == "Linux"
    assert document["os"]["version"] and isinstance(document["os"]["version"], str)
    assert document["os"]["cpus"] == os.cpu_count()
    assert document["os"]["architecture"] == os.uname().machine
    assert document["memory"]["total"] == document["memory"]["ram"] == psutil.virtual_memory().total > 2**24

    networks = document["networks"]
    assert all(set(n) == {"address", "name", "mtu", "broadcast", "netmask", "hwaddr", "type"} for n in networks), (
        networks
    )
    configured = {name: {a.address.split("%")[0] for a in snics} for name, snics in psutil.net_if_addrs().items()}
    for network in networks:
        assert network["address"] in configured[network["name"]]
        ipaddress.ip_address(network["address"])
        assert network["mtu"] > 0
    loopback = next(n for n in networks if n["address"] == "127.0.0.1")
    assert (loopback["type"], loopback["netmask"]) == ("Loopback", "255.0.0.0")
    ethernet = [n for n in networks if n["type"] == "Ethernet"]
    assert ethernet, "a test machine has a network interface besides loopback"
    assert all(len(n["hwaddr"].split(":")) == 6 for n in ethernet)

    disks = {d["dirName"]: d for d in document["disks"]}
    root = disks["/"]
    assert set(root) == {"dirName", "devName", "sysTypeName", "option", "total"}
    assert root["total"] == psutil.disk_usage("/").total > 0
    assert root["devName"] and root["sysTypeName"] and "r" in root["option"]
    pseudo = {d["dirName"] for d in document["disks"] if d["sysTypeName"] in metrics.PSEUDO_FILESYSTEMS}
    assert not pseudo and "/proc" not in disks and "/sys" not in disks


def test_tags_come_from_the_environment_then_the_flags_each_once() -> None:
    assert parse_tags(["ssd", " web "], "appserver, ssd,,") == ["appserver", "ssd", "web"]
    assert parse_tags([], None) == []
    for bad in ("two words", "a\0b", "tags:x", "", "x" * 65, "é"):
        with pytest.raises(ValueError, match="tag .* must be 1 to 64 letters"):
            parse_tags([bad], None)
    with pytest.raises(ValueError, match="65 tags given, at most 64"):
        parse_tags([f"t{i}" for i in range(65)], None)


def test_a_bad_tag_stops_the_agent_with_a_clear_message(tmp_path: Path, data_dir: Path) -> None:
    agent = AgentProcess(tmp_path, "--redis-url", "redis://127.0.0.1:1/0", "--data-dir", str(data_dir), "--tag", "a b")
    assert agent.proc.wait(10) == 2
    assert "agent cannot start: tag 'a b' must be 1 to 64 letters, digits" in agent.log


def test_the_agent_sends_its_node_document_and_tags_and_queries_find_it(
    data_dir: Path,
    tmp_path: Path,
    agents: list[AgentProcess],  # noqa: F811
    manager: ManagerProcess,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CORRAL_RUNTIME_DIR", str(tmp_path / "run"))
    assert local_join_token_path(manager.port).exists()
    monkeypatch.setenv("CORRAL_TAGS", "appserver,ssd")
    agent = AgentProcess(
        tmp_path, "--manager-url", manager.url, "--data-dir", str(data_dir), "--tag", "hpc", "--tag", "ssd"
    )
    agents.append(agent)
    wait_until(agent.joined, timeout=30, what="the agent to join")
    node_id = (data_dir / "node-id").read_text().strip()

    # Joined is not yet online: the first heartbeat may land a moment after the node id is written (CI saw it).
    node = wait_until(
        lambda: (doc := manager.get(f"/api/nodes/{node_id}").json())["status"] == "online" and doc,
        timeout=30,
        what="the node online",
    )
    assert node["tags"] == node["agent_tags"] == ["appserver", "ssd", "hpc"] and node["api_tags"] is None
    assert node["agentAddress"] == f"http://127.0.0.1:{agent.port}"  # the status port at the advertised IP
    assert node["os"] == {
        "name": "Linux",
        "version": metrics.node_document("", "", [])["os"]["version"],
        "cpus": os.cpu_count(),
        "architecture": os.uname().machine,
    }
    assert node["memory"]["total"] == psutil.virtual_memory().total
    assert "127.0.0.1" in {n["address"] for n in node["networks"]}
    assert "/" in {d["dirName"] for d in node["disks"]}
    assert node["facts"]["os"] == "Linux" and node["status"] == "online"  # the older fields unchanged

    def found(query: str) -> list[str]:
        answer = manager.get("/api/nodes", params={"q": query})
        assert answer.status_code == 200, answer.text
        return [n["id"] for n in answer.json()["nodes"]]

    assert found("tags:hpc AND tags:appserver") == [node_id]
    assert found(f"os.cpus:>={os.cpu_count()} AND disks.dirName:\\/ AND networks.address:127.0.0.*") == [node_id]
    assert found('disks.dirName:"/" AND agentAddress:http*') == [node_id]  # a path: escaped or quoted (Lucene)
    assert found(f"memory.total:>{psutil.virtual_memory().total}") == []
    assert found("tags:gpu") == []

    # Tags set through the API outlive the agent's restart with other tags of its own.
    assert requests.put(f"{manager.url}/api/nodes/{node_id}/tags", json={"tags": ["canary"]}, timeout=10).ok
    assert agent.terminate() == 0
    monkeypatch.delenv("CORRAL_TAGS")
    again = AgentProcess(tmp_path, "--manager-url", manager.url, "--data-dir", str(data_dir), "--tag", "edge")
    agents.append(again)
    wait_until(
        lambda: manager.get(f"/api/nodes/{node_id}").json()["agent_tags"] == ["edge"],
        timeout=30,
        what="the restarted agent's tags",
    )
    node = manager.get(f"/api/nodes/{node_id}").json()
    assert (node["tags"], node["api_tags"]) == (["canary"], ["canary"])
    assert node["agentAddress"] == f"http://127.0.0.1:{again.port}"
    assert found("tags:canary") == [node_id] and found("tags:edge") == []
    assert again.terminate() == 0
