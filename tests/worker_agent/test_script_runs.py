"""Registered scripts on the agent (issue 17): fetched once by digest, checked before each run, zips extracted
safely; real Redis, real processes (the command runner's whole path)."""

from __future__ import annotations

import hashlib
import io
import os
import time
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis as redis_lib

from shared import keys
from shared.defaults import SCRIPT_CACHE_KEEP_SECONDS, SCRIPT_MAX_EXTRACTED_BYTES
from tests.support import wait_until
from tests.worker_agent.conftest import final_report, run_payload
from worker_agent.agent_schedules.firing import AgentSchedules, task_id_of
from worker_agent.fleet_commands.runner import CommandRunner
from worker_agent.fleet_commands.script_cache import SCRIPTS_DIR, ScriptCache

BODY = b"import os, sys\nprint('args', sys.argv[1:])\nprint('env', os.environ.get('CORRAL_PARAM_WHO'))\n"


def publish(redis: redis_lib.Redis, content: bytes) -> str:
    digest = hashlib.sha256(content).hexdigest()
    redis.set(keys.script_content(digest), content)
    return digest


def script_part(digest: str, kind: str = "body", entry: str = "", interpreter: str = "python3") -> dict[str, Any]:
    return {
        "name": "hello",
        "version": "1.0",
        "digest": digest,
        "interpreter": interpreter,
        "kind": kind,
        "entry": entry,
        "args": ["--who=ann", "--n=2"],
    }


def run(commands: CommandRunner, redis: redis_lib.Redis, task_id: str, script: dict[str, Any]) -> dict[str, Any]:
    commands.run(
        run_payload(task_id, "script:hello@1.0", script=script, env={"CORRAL_PARAM_WHO": "ann", "CORRAL_PARAM_N": "2"})
    )
    found: dict[str, Any] = wait_until(lambda: final_report(redis, task_id), timeout=10, what=f"{task_id} to end")
    return found


def zipped(files: dict[str, bytes], link: str | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
        if link is not None:
            info = zipfile.ZipInfo(link)
            info.external_attr = 0o120777 << 16  # a symlink
            archive.writestr(info, "/etc/passwd")
    return buffer.getvalue()


def test_a_body_is_fetched_once_then_run_from_the_checked_cache(
    commands: CommandRunner, redis_client: redis_lib.Redis, data_dir: Path
) -> None:
    digest = publish(redis_client, BODY)
    first = run(commands, redis_client, "s-1", script_part(digest))
    assert first["status"] == "succeeded", first
    assert first["stdout"] == "args ['--who=ann', '--n=2']\nenv ann\n"
    cached = data_dir / SCRIPTS_DIR / digest / "script"
    before = os.stat(cached)
    redis_client.delete(keys.script_content(digest))  # a second run needs no fetch
    second = run(commands, redis_client, "s-2", script_part(digest))
    assert second["status"] == "succeeded" and second["stdout"] == first["stdout"]
    after = os.stat(cached)
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_a_tampered_cache_is_fetched_again_and_a_wrong_content_refused(
    commands: CommandRunner, redis_client: redis_lib.Redis, data_dir: Path
) -> None:
    digest = publish(redis_client, BODY)
    assert run(commands, redis_client, "t-1", script_part(digest))["status"] == "succeeded"
    cached = data_dir / SCRIPTS_DIR / digest / "script"
    cached.chmod(0o600)
    cached.write_bytes(b"print('tampered')\n")
    again = run(commands, redis_client, "t-2", script_part(digest))
    assert again["status"] == "succeeded" and "tampered" not in again["stdout"]
    assert cached.read_bytes() == BODY
    # What Redis holds under a digest must hash to it: refused, never written, never run.
    cached.chmod(0o600)
    cached.write_bytes(b"print('tampered')\n")
    redis_client.set(keys.script_content(digest), b"print('forged')\n")
    refused = run(commands, redis_client, "t-3", script_part(digest))
    assert refused["status"] == "failed" and "does not match its digest: refused" in refused["error_message"]
    assert refused["stdout"] == "" and not (data_dir / SCRIPTS_DIR / digest).exists()
    missing = run(commands, redis_client, "t-4", script_part("0" * 64))
    assert missing["status"] == "failed" and "not in Redis" in missing["error_message"]


def test_a_zip_runs_its_entry_and_an_unsafe_one_is_refused(
    commands: CommandRunner, redis_client: redis_lib.Redis, data_dir: Path
) -> None:
    main = b'. "$(dirname "$0")/lib.sh"; echo "$GREETING $*"\n'
    archive = zipped({"app/main.sh": main, "app/lib.sh": b"GREETING=hi\n"})
    digest = publish(redis_client, archive)
    done = run(commands, redis_client, "z-1", script_part(digest, "zip", "app/main.sh", "sh"))
    assert done["status"] == "succeeded" and done["stdout"] == "hi --who=ann --n=2\n", done
    # An extracted file changed: the copy is extracted again from the checked zip.
    (data_dir / SCRIPTS_DIR / digest / "files" / "app" / "lib.sh").write_bytes(b"GREETING=evil\n")
    again = run(commands, redis_client, "z-2", script_part(digest, "zip", "app/main.sh", "sh"))
    assert again["stdout"] == "hi --who=ann --n=2\n"
    for task_id, bad in (
        ("z-3", zipped({"../evil.sh": b"echo evil\n", "main.sh": b"echo main\n"})),
        ("z-4", zipped({"main.sh": b"echo main\n"}, link="link.sh")),
    ):
        bad_digest = publish(redis_client, bad)
        refused = run(commands, redis_client, task_id, script_part(bad_digest, "zip", "main.sh", "sh"))
        assert refused["status"] == "failed" and "unsafe archive member" in refused["error_message"], refused
        assert not (data_dir / SCRIPTS_DIR / bad_digest).exists()
    assert not (data_dir.parent / "evil.sh").exists()


def test_a_zip_bomb_is_refused_and_unused_scripts_are_pruned(
    commands: CommandRunner, redis_client: redis_lib.Redis, data_dir: Path
) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("main.sh", b"echo main\n")
        archive.writestr("zeros", b"\0" * (SCRIPT_MAX_EXTRACTED_BYTES + 1))  # ~64 KiB compressed
    bomb = publish(redis_client, buffer.getvalue())
    refused = run(commands, redis_client, "b-1", script_part(bomb, "zip", "main.sh", "sh"))
    assert refused["status"] == "failed" and "more than" in refused["error_message"], refused
    assert not (data_dir / SCRIPTS_DIR / bomb).exists()

    used, unused = publish(redis_client, b"print('used')\n"), publish(redis_client, b"print('unused')\n")
    for task_id, digest in (("p-1", used), ("p-2", unused)):
        assert run(commands, redis_client, task_id, script_part(digest))["status"] == "succeeded"
    old = time.time() - SCRIPT_CACHE_KEEP_SECONDS - 60
    for digest in (used, unused):
        os.utime(data_dir / SCRIPTS_DIR / digest, (old, old))
    assert run(commands, redis_client, "p-3", script_part(used))["status"] == "succeeded"  # used again: kept
    cache = ScriptCache(data_dir, "n", lambda: redis_client)
    assert cache.prune() == 1
    assert (data_dir / SCRIPTS_DIR / used).is_dir() and not (data_dir / SCRIPTS_DIR / unused).exists()


def test_an_agent_schedule_caches_its_script_when_the_set_arrives_and_fires_it_without_redis(
    commands: CommandRunner, redis_client: redis_lib.Redis, data_dir: Path, node_id: str
) -> None:
    digest = publish(redis_client, BODY)
    entry = {
        "id": "s1",
        "name": "hello-every",
        "command": "script:hello@1.0",
        "script": script_part(digest),
        "timeout": 10.0,
        "env": {"CORRAL_PARAM_WHO": "ann"},
        "cron": None,
        "interval": 3600,  # fires only when the test says: the first tick is an hour away
        "created_at": datetime.now(UTC).timestamp(),
    }
    held = AgentSchedules(data_dir, node_id, commands.run, commands.keep_scripts).start()
    try:
        assert held.apply({"version": 1, "schedules": [entry]}) == {"applied": True, "version": 1}
        assert (data_dir / SCRIPTS_DIR / digest / "script").read_bytes() == BODY  # cached on arrival
        redis_client.delete(keys.script_content(digest))  # the firing needs no Redis to have its script
        fired_at = datetime.now(UTC)
        held._fire(held._held.schedules[0], fired_at)  # a tick, as the FiringExecutor calls it
        task_id = task_id_of("s1", fired_at)
        found = wait_until(lambda: final_report(redis_client, task_id), timeout=10, what="the firing to end")
        assert found["status"] == "succeeded" and found["stdout"] == "args ['--who=ann', '--n=2']\nenv ann\n"
        assert found["schedule"]["command"] == "script:hello@1.0"
        # Kept from pruning however long unused: the node must fire it while Redis is unreachable.
        old = time.time() - SCRIPT_CACHE_KEEP_SECONDS - 60
        os.utime(data_dir / SCRIPTS_DIR / digest, (old, old))
        commands._prune()
        assert (data_dir / SCRIPTS_DIR / digest).is_dir()
        # A set whose script cannot be fetched is applied all the same, saying which script it lacks.
        other = {**entry, "id": "s2", "script": script_part("0" * 64)}
        applied = held.apply({"version": 2, "schedules": [other]})
        assert applied["applied"] is True and "hello@1.0" in applied["scripts_unavailable"][0]
        commands._prune()  # the first one is no longer held: pruned
        assert not (data_dir / SCRIPTS_DIR / digest).exists()
    finally:
        held.close()
