"""Plain-text rendering of businesses for `corral business` (pure functions)."""

from __future__ import annotations

from corral_cli.businesses import components_table, progress_text


def test_components_table_shows_node_state_usage_and_short_container_id() -> None:
    text = components_table(
        [
            {
                "component_id": "web",
                "type": "docker",
                "hostname": "node-a",
                "status": "running",
                "container_id": "0123456789abcdef0123",
                "resource_usage": {"cpu_percent": 12.345, "memory_mb": 850.4},
            },
            {
                "component_id": "worker",
                "type": "process",
                "node_id": "n2",
                "status": "failed",
                "pid": 4242,
                "error_message": "exited with code 3",
            },
        ]
    )
    lines = text.splitlines()
    assert lines[0].split() == ["COMPONENT", "TYPE", "NODE", "STATUS", "CONTAINER/PID", "CPU", "MEMORY", "ERROR"]
    assert lines[1].split() == ["web", "docker", "node-a", "running", "0123456789ab", "12.3%", "850", "MB", "-"]
    assert lines[2].split()[:4] == ["worker", "process", "n2", "failed"]
    assert "4242" in lines[2] and "exited with code 3" in lines[2]


def test_progress_text_counts_running_and_the_rest() -> None:
    business = {
        "status": "deploying",
        "components": [{"status": "running"}, {"status": "starting"}, {"status": "running"}, {"status": "pending"}],
    }
    assert progress_text(business) == "deploying: 2/4 running, 1 pending, 1 starting"
    assert progress_text({"status": "running", "components": [{"status": "running"}]}) == "running: 1/1 running"
