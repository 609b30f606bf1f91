"""Named API tokens (issue 15): created through the API with the secret shown once and only its hash stored,
listed, expired and revoked; every request's identity is in the audit log; the bootstrap --api-token stays admin."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient

from manager_api.config import Settings
from manager_api.models import ApiToken, AuditLog, utcnow
from shared.api import bearer

from .conftest import answer
from .token_helpers import BOOTSTRAP, make_token, secured_app


@pytest.fixture
def secured(settings: Settings) -> Iterator[Flask]:
    with secured_app(settings) as application:
        yield application


@pytest.fixture
def admin(secured: Flask) -> FlaskClient:
    return secured.test_client()


def test_a_created_token_is_shown_once_and_only_its_hash_is_stored(admin: FlaskClient) -> None:
    created = make_token(admin, "ci", "viewer")
    text = created["token"]
    assert text.startswith(f"corral_{created['id']}_")
    secret = text.split("_", 2)[2]
    row = ApiToken.get_by_id(created["id"])
    assert row.secret_hash == hashlib.sha256(secret.encode()).hexdigest()
    every_column = " ".join(str(value) for value in row.__data__.values())
    assert secret not in every_column
    shown = answer(admin.get(f"/api/tokens/{created['id']}", headers=bearer(BOOTSTRAP)))
    listed = answer(admin.get("/api/tokens", headers=bearer(BOOTSTRAP)))
    assert "token" not in shown and secret not in str(listed) and secret not in str(shown)
    assert (shown["role"], shown["state"], shown["createdBy"]) == ("viewer", "active", "token@127.0.0.1")
    assert [t["name"] for t in listed["tokens"]] == ["ci"]
    assert admin.get("/api/nodes", headers=bearer(text)).status_code == 200


def test_a_wrong_secret_an_unknown_id_and_garbage_are_refused(admin: FlaskClient) -> None:
    text = make_token(admin, "ci", "admin")["token"]
    for bad in (text[:-1] + ("A" if text[-1] != "A" else "B"), "corral_ffffffffffff_x", "corral_", "corral__"):
        response = admin.get("/api/nodes", headers=bearer(bad))
        assert response.status_code == 401, bad
        assert response.get_json() == {"error": "Invalid API token"}


def test_a_revoked_token_is_refused_at_its_next_request_and_keeps_its_row(admin: FlaskClient) -> None:
    created = make_token(admin, "ci", "operator")
    assert admin.get("/api/tasks", headers=bearer(created["token"])).status_code == 200
    revoked = answer(admin.delete(f"/api/tokens/{created['id']}", headers=bearer(BOOTSTRAP)))
    assert revoked["state"] == "revoked" and revoked["revokedAt"] is not None
    response = admin.get("/api/tasks", headers=bearer(created["token"]))
    assert response.status_code == 401
    assert "was revoked" in response.get_json()["error"]
    entry = AuditLog.get(AuditLog.action == "token.revoke")
    assert (entry.actor, entry.target) == ("token@127.0.0.1", created["id"])


def test_an_expired_token_is_refused(admin: FlaskClient) -> None:
    created = make_token(admin, "short", "viewer", expiresIn="1h")
    assert admin.get("/api/nodes", headers=bearer(created["token"])).status_code == 200
    ApiToken.update(expires_at=utcnow() - timedelta(seconds=1)).where(ApiToken.id == created["id"]).execute()
    response = admin.get("/api/nodes", headers=bearer(created["token"]))
    assert response.status_code == 401 and "expired" in response.get_json()["error"]
    assert answer(admin.get(f"/api/tokens/{created['id']}", headers=bearer(BOOTSTRAP)))["state"] == "expired"


def test_expiry_is_given_as_a_duration_or_a_time_not_both(admin: FlaskClient) -> None:
    by_duration = make_token(admin, "a", "viewer", expiresIn="30d")
    by_time = make_token(admin, "b", "viewer", expiresAt="2099-01-01T00:00:00Z")
    assert by_time["expiresAt"] == "2099-01-01T00:00:00Z"
    assert by_duration["expiresAt"] > by_time["createdAt"]
    both = make_token(admin, "c", "viewer", 400, expiresIn="1d", expiresAt="2099-01-01T00:00:00Z")
    assert "expiresIn" in both["error"]
    assert "expiresIn" in make_token(admin, "d", "viewer", 400, expiresIn="soon")["error"]


def test_bad_bodies_are_400s_naming_the_field_and_a_taken_name_is_409(admin: FlaskClient) -> None:
    assert "role" in make_token(admin, "x", "root", 400)["error"]
    assert "nodeQuery" in make_token(admin, "x", "operator", 400, nodeQuery="os.cpus:[1 TO")["error"]
    assert "only an operator" in make_token(admin, "x", "viewer", 400, commands=["ls"])["error"]
    assert "name" in make_token(admin, "bad name!", "viewer", 400)["error"]
    for rate in ("fast", "off", "0/second", ""):
        assert "rateLimit" in make_token(admin, "x", "viewer", 400, rateLimit=rate)["error"], rate
    assert make_token(admin, "ci", "operator", rateLimit="50/second")["rateLimit"] == "50/second"
    make_token(admin, "x", "viewer")
    assert "exists" in make_token(admin, "x", "admin", 409)["error"]


def test_the_audit_log_names_the_token_of_each_request(admin: FlaskClient) -> None:
    created = make_token(admin, "deployer", "operator")
    body = {"name": "tpl", "task_groups": [{"tasks": [{"name": "t", "config": {"command": "echo hi"}}]}]}
    answer(admin.post("/api/task/task_group", json=body, headers=bearer(created["token"])), 200)
    actors = {entry.action: entry.actor for entry in AuditLog.select()}
    assert actors["token.create"] == "token@127.0.0.1"  # the bootstrap token, named as before
    assert actors["template.create"] == "token:deployer@127.0.0.1"


def test_last_used_is_written_at_most_once_a_minute(admin: FlaskClient) -> None:
    created = make_token(admin, "ci", "viewer")
    assert ApiToken.get_by_id(created["id"]).last_used_at is None
    admin.get("/api/nodes", headers=bearer(created["token"]))
    first = ApiToken.get_by_id(created["id"]).last_used_at
    assert first is not None
    admin.get("/api/nodes", headers=bearer(created["token"]))
    assert ApiToken.get_by_id(created["id"]).last_used_at == first


def test_on_an_open_api_a_named_token_still_applies_its_role_and_a_bad_one_is_refused(client: FlaskClient) -> None:
    created = answer(client.post("/api/tokens", json={"name": "v", "role": "viewer"}), 201)
    assert (
        client.post("/api/tokens", json={"name": "w", "role": "viewer"}, headers=bearer(created["token"])).status_code
        == 403
    )
    assert client.get("/api/nodes", headers=bearer("corral_000000000000_nope")).status_code == 401
    assert client.get("/api/nodes").status_code == 200  # no token: open, as before
