"""`corral token`: create (the secret printed once), list, show, revoke, against a real manager; the created
token then works as CORRAL_API_TOKEN with its role."""

from __future__ import annotations

import json

import pytest

from tests.corral_cli.stack import Stack, ok

pytestmark = pytest.mark.e2e


def test_token_verbs(stack: Stack) -> None:
    created = ok(stack.corral("token", "create", "cli-viewer", "--role", "viewer", "--expires", "30d")).stdout
    lines = created.splitlines()
    assert lines[0].startswith("token: corral_") and "shown once" in lines[1]
    secret = lines[0].removeprefix("token: ")
    token_id = secret.split("_")[1]
    assert lines[3].split()[:4] == ["cli-viewer", token_id, "viewer", "active"]

    scoped = json.loads(
        ok(
            stack.corral(
                "token",
                "create",
                "cli-ops",
                "--role",
                "operator",
                "--node-query",
                "hostname:x",
                "--command",
                "echo *",
                "--command",
                "uptime",
                "--rate-limit",
                "50/second",
                "--json",
            )
        ).stdout
    )
    assert (scoped["nodeQuery"], scoped["commands"]) == ("hostname:x", ["echo *", "uptime"])
    assert scoped["rateLimit"] == "50/second"

    listed = ok(stack.corral("token", "list")).stdout.splitlines()
    assert listed[0].split() == ["ID", "NAME", "ROLE", "STATE", "NODE", "QUERY", "EXPIRES"]
    assert [row.split()[1] for row in listed[1:3]] == ["cli-viewer", "cli-ops"]
    assert secret not in "".join(listed)
    shown = ok(stack.corral("token", "show", token_id)).stdout
    assert "token:" not in shown and "cli-viewer" in shown
    assert "rate limit: the manager default" in shown

    # The viewer token reads, and may not create tokens: the manager's 403 names what it lacks.
    assert ok(stack.corral("nodes", CORRAL_API_TOKEN=secret)).returncode == 0
    refused = ok(stack.corral("token", "create", "x", "--role", "admin", CORRAL_API_TOKEN=secret), 2)
    assert "has role viewer" in refused.stderr and "needs admin" in refused.stderr

    assert "revoked" in ok(stack.corral("token", "revoke", token_id)).stdout
    gone = ok(stack.corral("nodes", CORRAL_API_TOKEN=secret), 2)
    assert "was revoked" in gone.stderr
    assert "--role" in ok(stack.corral("token", "create", "y"), 2).stderr
