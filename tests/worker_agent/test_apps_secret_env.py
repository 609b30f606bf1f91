"""An app instance's sealed secret env on the agent: opened at each start with the node's job key, kept sealed in
apps.json, and never started without it (no key yet, or a blob sealed for another instance)."""

from __future__ import annotations

from pathlib import Path

import redis as redis_lib

from shared import job_signing, secret_env
from tests.support import wait_until
from worker_agent import jobs

from .apps_support import log_lines, make_instances, running, spec, state_is, stop

SECRET = "agent-secret-31c9"


def test_an_instance_waits_for_its_job_key_and_gets_its_secret_at_each_start(
    data_dir: Path, node_id: str, redis_client: redis_lib.Redis
) -> None:
    key = job_signing.node_key(b"k" * 32, node_id)
    given: list[bytes] = []  # empty: the agent has not joined yet
    have_key = lambda: given[0] if given else None  # noqa: E731
    sealed = secret_env.seal(key, secret_env.instance_context("web", "s1"), {"DB_PASSWORD": SECRET})
    command = 'echo "len=${#DB_PASSWORD} rev=$(echo "$DB_PASSWORD" | rev)"; sleep 0.3; exit 1'
    with running(make_instances(data_dir, node_id, redis_client, key=have_key)):
        jobs.run_instance(spec("s1", command, secret_env=sealed))
        # Without the key the process is not started: a start failure, retried after the backoff.
        failed = wait_until(lambda: state_is(redis_client, "s1", "backoff"), what="a start failure")
        assert "no job key" in (failed["reason"] or "") and failed["pid"] is None
        given.append(key)
        line = f"len={len(SECRET)} rev={SECRET[::-1]}"
        # Started once the key is there, and again (it exits 1) with the secret each time.
        wait_until(lambda: log_lines(redis_client, node_id, "s1").count(line) >= 2, timeout=20, what="two starts")
        records = (data_dir / "apps.json").read_text()
        assert sealed in records and SECRET not in records
        jobs.stop_instance(stop("s1"))
        wait_until(lambda: state_is(redis_client, "s1", "stopped"), what="the stop")


def test_a_secret_sealed_for_another_instance_never_starts_it(
    data_dir: Path, node_id: str, redis_client: redis_lib.Redis
) -> None:
    key = job_signing.node_key(b"k" * 32, node_id)
    moved = secret_env.seal(key, secret_env.instance_context("web", "other"), {"DB_PASSWORD": SECRET})
    with running(make_instances(data_dir, node_id, redis_client, key=lambda: key)):
        jobs.run_instance(spec("s2", "echo started; sleep 30", secret_env=moved))
        failed = wait_until(lambda: state_is(redis_client, "s2", "backoff"), what="a start failure")
        assert "does not open" in (failed["reason"] or "") and SECRET not in failed["reason"]
        assert "started" not in log_lines(redis_client, node_id, "s2")
        jobs.stop_instance(stop("s2"))
        wait_until(lambda: state_is(redis_client, "s2", "stopped"), what="the stop")
