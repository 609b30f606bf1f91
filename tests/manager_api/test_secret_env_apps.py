"""Secret env of apps (``secretEnvs``) and business components (``secret_environment_variables``): encrypted
at rest, sealed per node in the signed job, answered as names only, audited without values, kept by an update
that leaves them out, a changed one rolling out like any change, and rotated by ``manager secrets rotate-key``."""

from __future__ import annotations

import json
import zlib
from typing import Any

import pytest
import redis as redis_lib
from flask.testing import FlaskClient

from manager_api.config import Settings
from manager_api.launcher.main import main as manager_main
from manager_api.models import App, AuditLog, Business, BusinessComponent
from manager_api.services import job_keys, secret_store
from shared import secret_env

from .app_helpers import app_body, create, instance_jobs, show, take
from .business_helpers import add_node, business, component, component_jobs, deploy, detail, take_jobs
from .conftest import answer

SECRET = "app-s3cr3t-0815"
OTHER = "rotated-s3cr3t-4242"


@pytest.fixture
def node(client: FlaskClient, redis_client: redis_lib.Redis) -> None:
    add_node(client, redis_client, "n1")


def _no_plain_anywhere(client: FlaskClient, redis_client: redis_lib.Redis, *values: str) -> None:
    """No answer listed here, no audit entry and no Redis key holds any of ``values``."""
    answers = json.dumps([answer(client.get("/api/apps")), answer(client.get("/api/businesses"))])
    audit = [row.detail for row in AuditLog.select()]
    stored = [redis_client.dump(key) or b"" for key in redis_client.scan_iter("*")]
    # RQ keeps a job's arguments zlib-compressed: looked at uncompressed too.
    for key in redis_client.scan_iter("rq:job:*"):
        if redis_client.type(key) == b"hash" and (data := redis_client.hget(key, "data")):
            stored.append(zlib.decompress(data))
    for value in values:
        assert value not in answers and all(value not in entry for entry in audit)
        assert all(value.encode() not in blob for blob in stored)


def _opened_run(payload: dict[str, Any], node_id: str = "n1") -> dict[str, str]:
    context = secret_env.instance_context(payload["app"], payload["instance_id"])
    return secret_env.open_sealed(job_keys.node_key(node_id), context, payload.get("secret_env"))


def test_app_secret_envs_are_names_in_answers_encrypted_in_the_row_and_sealed_in_the_job(
    client: FlaskClient, redis_client: redis_lib.Redis, node: None
) -> None:
    got = create(client, app_body(envs={"PLAIN": "1"}, secretEnvs={"DB_PASSWORD": SECRET}))
    assert got["secretEnvs"] == {"DB_PASSWORD": "(secret)"} and "secretEnvs" not in got["definition"]
    assert SECRET not in json.dumps(got) and SECRET not in json.dumps(show(client))
    row = App.get_by_id("web")
    assert SECRET not in row.spec and SECRET not in row.secret_envs
    assert secret_store.decrypt_env(row.secret_envs) == {"DB_PASSWORD": SECRET}
    [(kind, payload)] = instance_jobs(redis_client, "n1")
    assert kind == "run" and SECRET not in json.dumps(payload)
    assert _opened_run(payload) == {"DB_PASSWORD": SECRET}
    # Bound to its instance: the same blob in another instance's job (or on another node) does not open.
    with pytest.raises(secret_env.SecretEnvError):
        secret_env.open_sealed(job_keys.node_key("n1"), "app:web:other", payload["secret_env"])
    with pytest.raises(secret_env.SecretEnvError):
        _opened_run(payload, "n2")
    _no_plain_anywhere(client, redis_client, SECRET)


def test_a_name_in_envs_and_secret_envs_is_a_400_naming_the_field(client: FlaskClient, node: None) -> None:
    got = answer(client.post("/api/apps", json=app_body(envs={"A": "1"}, secretEnvs={"A": "2"})), 400)
    assert "secretEnvs" in got["error"] and App.get_or_none(App.name == "web") is None


def test_a_put_without_secret_envs_keeps_them_and_restarts_nothing_a_changed_one_rolls(
    client: FlaskClient, redis_client: redis_lib.Redis, node: None
) -> None:
    body = app_body(secretEnvs={"DB_PASSWORD": SECRET})
    create(client, body)
    take(redis_client, "n1")
    # Left out: kept, no new version, no job.
    without = {key: value for key, value in body.items() if key != "secretEnvs"}
    kept = answer(client.put("/api/apps/web", json=without))
    assert kept["version"] == 1 and kept["secretEnvs"] == {"DB_PASSWORD": "(secret)"}
    assert secret_store.decrypt_env(App.get_by_id("web").secret_envs) == {"DB_PASSWORD": SECRET}
    # The same values again: nothing changes either.
    assert answer(client.put("/api/apps/web", json=body))["version"] == 1
    assert take(redis_client, "n1") == []
    # A new value: a new version, rolled out with the new value sealed for the node; the audit names the field.
    rolled = answer(client.put("/api/apps/web", json=app_body(secretEnvs={"DB_PASSWORD": OTHER})))
    assert rolled["version"] == 2
    runs = [payload for kind, payload in take(redis_client, "n1") if kind == "run"]
    assert runs and all(_opened_run(payload) == {"DB_PASSWORD": OTHER} for payload in runs)
    entry = AuditLog.select().where(AuditLog.action == "app.update").order_by(AuditLog.id.desc()).get()
    assert "secretEnvs" in json.loads(entry.detail)["changed"]
    # An empty object removes them (and is a change too).
    cleared = answer(client.put("/api/apps/web", json=app_body(secretEnvs={})))
    assert cleared["version"] == 3 and cleared["secretEnvs"] == {} and App.get_by_id("web").secret_envs == ""
    _no_plain_anywhere(client, redis_client, SECRET, OTHER)


def test_component_secret_env_is_names_only_encrypted_and_sealed_for_its_generation(
    client: FlaskClient, redis_client: redis_lib.Redis, node: None
) -> None:
    body = business(
        component("api", environment_variables={"PLAIN": "1"}, secret_environment_variables={"KEY": SECRET})
    )
    business_id = deploy(client, body)["business_id"]
    shown = detail(client, business_id)
    assert shown["components"][0]["secret_environment_variables"] == {"KEY": "(secret)"}
    assert SECRET not in json.dumps(shown)
    assert SECRET not in Business.get_by_id(business_id).spec
    row = BusinessComponent.get(BusinessComponent.component_id == "api")
    assert SECRET not in row.secret_environment_variables
    assert secret_store.decrypt_env(row.secret_environment_variables) == {"KEY": SECRET}
    [(kind, payload)] = component_jobs(redis_client, "n1")
    assert kind == "deploy" and SECRET not in json.dumps(payload)
    context = secret_env.component_context(business_id, "api", payload["generation"])
    assert secret_env.open_sealed(job_keys.node_key("n1"), context, payload["secret_env"]) == {"KEY": SECRET}
    with pytest.raises(secret_env.SecretEnvError):  # not for the next generation
        secret_env.open_sealed(job_keys.node_key("n1"), context + "0", payload["secret_env"])
    _no_plain_anywhere(client, redis_client, SECRET)


def test_component_clash_is_a_400_and_an_update_without_it_keeps_it(
    client: FlaskClient, redis_client: redis_lib.Redis, node: None
) -> None:
    clash = business(component("api", environment_variables={"K": "1"}, secret_environment_variables={"K": "2"}))
    got = answer(client.post("/api/businesses", json=clash), 400)
    assert "secret_environment_variables" in got["error"]
    body = business(component("api", secret_environment_variables={"KEY": SECRET}), business_id="shop-1")
    deploy(client, body)
    take_jobs(redis_client, "n1")
    unchanged = answer(client.put("/api/businesses/shop-1", json=business(component("api"), business_id="shop-1")))
    assert unchanged["message"] == "nothing to change" and take_jobs(redis_client, "n1") == []
    row = BusinessComponent.get(BusinessComponent.component_id == "api")
    assert secret_store.decrypt_env(row.secret_environment_variables) == {"KEY": SECRET}
    changed = business(component("api", secret_environment_variables={"KEY": OTHER}), business_id="shop-1")
    assert answer(client.put("/api/businesses/shop-1", json=changed))["changed"] == ["api"]
    [(kind, payload)] = [job for job in take_jobs(redis_client, "n1") if job[0] == "deploy"]
    context = secret_env.component_context("shop-1", "api", payload["generation"])
    assert secret_env.open_sealed(job_keys.node_key("n1"), context, payload["secret_env"]) == {"KEY": OTHER}
    _no_plain_anywhere(client, redis_client, SECRET, OTHER)


def test_rotate_key_covers_apps_and_components(
    client: FlaskClient, redis_client: redis_lib.Redis, settings: Settings, node: None
) -> None:
    create(client, app_body(secretEnvs={"DB_PASSWORD": SECRET}))
    deploy(client, business(component("api", secret_environment_variables={"KEY": OTHER})))
    before = (App.get_by_id("web").secret_envs, BusinessComponent.get().secret_environment_variables)
    key_file = secret_store.key_file_of(settings)
    db_flag = ["--db-url", settings.db_path] if "://" in settings.db_path else ["--db-path", settings.db_path]
    assert manager_main(["secrets", "rotate-key", *db_flag, "--secrets-key-file", str(key_file)]) == 0
    after = (App.get_by_id("web").secret_envs, BusinessComponent.get().secret_environment_variables)
    assert after[0] != before[0] and after[1] != before[1]
    assert secret_store.decrypt_env(after[0]) == {"DB_PASSWORD": SECRET}
    assert secret_store.decrypt_env(after[1]) == {"KEY": OTHER}
    rotation = AuditLog.get(AuditLog.action == "secrets.rotate_key")
    assert json.loads(rotation.detail)["rows"] == 2
