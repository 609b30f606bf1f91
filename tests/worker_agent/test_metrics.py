"""metrics.collect and metrics.facts report sane figures."""

from __future__ import annotations

import ipaddress
import os
import shutil
from pathlib import Path

import psutil
import pytest

from shared.heartbeat import FIELDS
from worker_agent import cli, metrics


def test_collect_returns_every_heartbeat_field_with_sane_numbers() -> None:
    figures = metrics.collect(5.0, "node-a", "10.0.0.7", tasks_running=2)

    # The script stamps ts; the agent adds its worker's state and the version of its agent-side schedules.
    assert set(figures) == set(FIELDS) - {"ts", "taking_jobs", "agent_schedules_version"}
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


def test_facts_list_gpus_and_addresses_for_the_scheduler() -> None:
    facts = metrics.facts()

    assert facts["gpu_count"] == len(facts["gpus"])
    if shutil.which("nvidia-smi") is None:
        assert facts["gpus"] == []
    assert facts["addresses"], "a test machine has at least one non-loopback address"
    for address in facts["addresses"]:
        assert not ipaddress.ip_address(address).is_loopback
    configured = {a.address.split("%")[0] for snics in psutil.net_if_addrs().values() for a in snics}
    assert set(facts["addresses"]) <= configured


def test_gpus_are_read_from_nvidia_smi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "nvidia-smi"
    fake.write_text(
        '#!/bin/sh\n[ "$*" = "--query-gpu=index,name --format=csv,noheader" ] || exit 9\n'
        'echo "0, NVIDIA A100-SXM4-40GB"\necho "1, NVIDIA A100-SXM4-40GB"\n'
    )
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")

    facts = metrics.facts()
    assert facts["gpus"] == [
        {"index": 0, "model": "NVIDIA A100-SXM4-40GB"},
        {"index": 1, "model": "NVIDIA A100-SXM4-40GB"},
    ]
    assert facts["gpu_count"] == 2

    fake.write_text("#!/bin/sh\nexit 3\n")
    assert metrics.facts()["gpus"] == []


def test_capacity_overrides_replace_what_is_detected() -> None:
    facts = metrics.facts({"cpu_count": 2.5, "memory_total_mb": 512, "gpu_count": 1})
    assert (facts["cpu_count"], facts["memory_total_mb"], facts["gpu_count"]) == (2.5, 512, 1)
    with pytest.raises(ValueError, match="not a capacity fact"):
        metrics.facts({"os": "plan9"})


def test_capacity_flags_and_environment() -> None:
    assert cli.capacity_overrides(None, None, None, {}) == {}
    assert cli.capacity_overrides(4, 2048, 0, {}) == {"cpu_count": 4, "memory_total_mb": 2048, "gpu_count": 0}
    env = {"CORRAL_CPU_CORES": "1.5", "CORRAL_MEMORY_MB": "100", "CORRAL_GPUS": "2"}
    assert cli.capacity_overrides(None, None, None, env) == {"cpu_count": 1.5, "memory_total_mb": 100, "gpu_count": 2}
    assert cli.capacity_overrides(8, None, None, env)["cpu_count"] == 8  # the flag wins
    with pytest.raises(ValueError, match="CORRAL_MEMORY_MB must be a number"):
        cli.capacity_overrides(None, None, None, {"CORRAL_MEMORY_MB": "lots"})
    with pytest.raises(ValueError, match="--cpu-cores must be above 0"):
        cli.capacity_overrides(0, None, None, {})
    with pytest.raises(ValueError, match="--gpus must be at least 0"):
        cli.capacity_overrides(None, None, -1, {})


def test_component_flags_reach_the_agent_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORRAL_DOCKER_HOST", "unix:///from/env.sock")
    args = cli.build_parser().parse_args(["--sftp-key", "/k", "--sftp-known-hosts", "/kh", "--memory-mb", "64"])
    assert (args.docker_host, str(args.sftp_key), str(args.sftp_known_hosts)) == ("unix:///from/env.sock", "/k", "/kh")
    assert cli.build_parser().parse_args(["--docker-host", "tcp://h:2375"]).docker_host == "tcp://h:2375"
    assert cli.capacity_overrides(args.cpu_cores, args.memory_mb, args.gpus, {}) == {"memory_total_mb": 64}
