"""Schema migrations (manager_api.migrations, peewee's playhouse.migrations runner) on SQLite and PostgreSQL: the
migrated schema is the models' schema, an upgrade runs each migration once however many processes start at
once, databases made by older corrals keep their rows, and `manager migrate` applies and reports them."""

from __future__ import annotations

import multiprocessing
import sqlite3
import subprocess
import sys
import traceback
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from peewee import Database
from playhouse.migrate import SchemaMigrator
from playhouse.schema_diff import diff_models

from manager_api import db, migrations, models
from manager_api.models import DeploymentTask, FleetTask, Node, TaskHost, Template
from tests.postgres_support import postgres_database

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "old_databases"
OLD_DUMPS = sorted(FIXTURES.glob("*.sql"))
"""`sqlite3 FILE .dump` of databases made by older corrals, each by that commit's own init_db (see each file)."""

NODE_COLUMNS_ADDED = ("labels", "api_labels", "secret_digest", "forgotten_at", "api_tags")
"""The node columns an older corral's database may lack (0001_initial adds them)."""

ENGINES = ["sqlite", "postgresql"]
PROCESSES = 4


@pytest.fixture(params=ENGINES)
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A new empty database: a SQLite file path, or the URL of a PostgreSQL database of the test's own."""
    if request.param == "sqlite":
        yield str(tmp_path / "corral.db")
        return
    with postgres_database() as url:
        yield url


def open_unmigrated(path_or_url: str) -> Database:
    """The proxy pointed at the database, nothing created (the test upgrades it)."""
    return db.init_db(path_or_url, create_tables=False)


def schema_drift(database: Database) -> str:
    """What the models have that the database lacks, or the reverse; "" when they match."""
    return str(diff_models(database, models.ALL_MODELS))


def history(database: Database) -> list[str]:
    rows = database.execute_sql(f"SELECT name FROM {migrations.HISTORY_TABLE} ORDER BY name").fetchall()
    return [row[0] for row in rows]


def migration_names() -> list[str]:
    return sorted(path.stem for path in migrations.DIRECTORY.glob("[0-9]*.py"))


@pytest.fixture(autouse=True)
def closed_after() -> Iterator[None]:
    yield
    db.close()


def test_a_migrated_database_has_exactly_the_models_schema(target: str) -> None:
    # The test that fails when a model changes without a migration: write one (README, "Schema migrations").
    database = db.init_db(target)
    drift = schema_drift(database)
    assert drift == "", f"the models differ from what the migrations make; add a migration for:\n{drift}"
    assert [(m.name, m.applied is not None) for m in migrations.status(database)] == [
        (name, True) for name in migration_names()
    ]


def test_a_second_upgrade_applies_nothing(target: str) -> None:
    database = open_unmigrated(target)
    assert migrations.upgrade(database) == migration_names()
    assert migrations.upgrade(database) == []
    assert history(database) == migration_names()


def _upgrade_in_a_new_process(target: str, start: Any, results: Any) -> None:
    """A manager process starting (the launcher, a gunicorn worker): its own connection, upgrading at once."""
    try:
        database = open_unmigrated(target)
        start.wait(30)
        results.put(("applied", migrations.upgrade(database)))
    except BaseException:  # the parent asserts on it
        results.put(("error", traceback.format_exc()))
    finally:
        db.close()


def test_processes_upgrading_at_once_apply_each_migration_once(target: str) -> None:
    context = multiprocessing.get_context("spawn")  # a fresh interpreter each: a fork of pytest would share its state
    start = context.Barrier(PROCESSES)
    results = context.Queue()
    processes = [
        context.Process(target=_upgrade_in_a_new_process, args=(target, start, results)) for _ in range(PROCESSES)
    ]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=120) for _ in processes]
    for process in processes:
        process.join(30)
        assert process.exitcode == 0
    assert [outcome for outcome in outcomes if outcome[0] == "error"] == []
    applied = sorted(name for _, names in outcomes for name in names)
    assert applied == migration_names()  # each by one process, whichever came first
    database = open_unmigrated(target)
    assert history(database) == migration_names()
    assert schema_drift(database) == ""


@pytest.mark.parametrize("dump", OLD_DUMPS, ids=[path.stem for path in OLD_DUMPS])
def test_a_sqlite_database_of_an_older_corral_upgrades_with_its_rows(dump: Path, tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with closing(sqlite3.connect(path)) as loading:
        loading.executescript(dump.read_text())
    database = db.init_db(str(path))  # as the manager starts on it
    assert schema_drift(database) == ""
    assert history(database) == migration_names()
    node = Node.get_by_id("node-1")
    assert (node.hostname, node.ip, node.facts) == ("web-01", "10.0.0.1", '{"cpu_count": 4}')
    assert (node.labels, node.api_labels, node.api_tags, node.secret_digest, node.forgotten_at) == (
        "{}",
        "{}",
        None,
        None,
        None,
    )
    assert Template.get(Template.name == "tpl").spec == '[{"name": "g", "tasks": ["echo hi"]}]'
    task = DeploymentTask.get_by_id("dtask-1")
    assert (task.node_id, task.deployment.template.name) == ("node-1", "tpl")
    if "fleet_tasks" in dump.read_text():
        host = TaskHost.get(TaskHost.task == FleetTask.get(FleetTask.task_id == "ft-1"))
        assert (host.node_id, host.stdout) == ("node-1", "up 3 days")  # SET NULL never fired: no table copied
    # Today's code writes to it: a column 0001_initial added, and a row of a table it created.
    Node.update(api_tags='["gold"]').where(Node.id == "node-1").execute()
    assert Node.get_by_id("node-1").api_tags == '["gold"]'
    assert models.NodeRevision.get_by_id(1).value >= 1  # the revision triggers, installed after the upgrade


OLDER_ROWS = (
    "INSERT INTO node (id, hostname, ip, facts, interval, version, status, registered_at) "
    "VALUES ('node-1', 'web-01', '10.0.0.1', '{}', 5, '', 1, '2026-11-26 17:00:00')",
    "INSERT INTO template (id, name, spec, created_at) VALUES (1, 'tpl', '[]', '2026-11-26 17:00:00')",
    "INSERT INTO deployment (id, template_id, template_name, state, created_at, created_by) "
    "VALUES ('dep-1', 1, 'tpl', 'PENDING', '2026-11-26 17:00:00', '')",
    "INSERT INTO deployment_task (id, deployment_id, group_index, task_index, name, command, node_id, state, "
    "updated_at) VALUES ('dtask-1', 'dep-1', 0, 0, 't', 'echo hi', 'node-1', 'PENDING', '2026-11-26 17:00:00')",
    "INSERT INTO fleet_tasks (id, task_id, name, description, command, parameters, timeout, targets, env, status, "
    "total_hosts, completed_hosts, failed_hosts, created_by, created_at, updated_at) VALUES (1, 'ft-1', 'uptime', "
    "'', 'uptime', '', 30, '[]', '{}', 'completed', 1, 1, 0, '', '2026-11-26 17:00:00', '2026-11-26 17:00:00')",
    "INSERT INTO task_hosts (id, task_id, node_id, target, hostname, ip, status, stdout, stderr, stdout_truncated, "
    "stderr_truncated, updated_at) VALUES (1, 1, 'node-1', 'node-1', 'web-01', '10.0.0.1', 'succeeded', "
    "'up 3 days', '', false, false, '2026-11-26 17:00:00')",
)
"""Rows as an older corral wrote them, in SQL both engines take (its models are not today's)."""


def _make_an_older_corrals_database(database: Database) -> None:
    """What an older corral's init_db left: the tables of 0001_initial's time (its frozen models; today's may have
    more), no schema_migrations, a node table without the columns added later; then rows."""
    migrations.runner(database).up(target=migration_names()[0])
    database.execute_sql(f"DROP TABLE {migrations.HISTORY_TABLE}")
    migrator = SchemaMigrator.from_database(database)
    for column in NODE_COLUMNS_ADDED:
        migrator.migrate(migrator.drop_column("node", column))
    for statement in OLDER_ROWS:
        database.execute_sql(statement)


def test_a_database_of_an_older_corral_gains_the_node_columns_with_its_rows(target: str) -> None:
    # PostgreSQL has no dump of an older corral (the SQLite ones cannot load there): its database is made here as
    # those versions' init_db made it. The same on SQLite, beside the real dumps above.
    database = open_unmigrated(target)
    _make_an_older_corrals_database(database)
    present = {column.name for column in database.get_columns("node")}
    assert present.isdisjoint(NODE_COLUMNS_ADDED)
    assert migrations.HISTORY_TABLE not in database.get_tables()
    assert migrations.upgrade(database) == migration_names()
    assert schema_drift(database) == ""
    node = Node.get_by_id("node-1")
    assert (node.hostname, node.labels, node.api_labels, node.api_tags, node.forgotten_at) == (
        "web-01",
        "{}",
        "{}",
        None,
        None,
    )
    assert DeploymentTask.get_by_id("dtask-1").node_id == "node-1"
    host = TaskHost.get(TaskHost.task == FleetTask.get(FleetTask.task_id == "ft-1"))
    assert (host.node_id, host.stdout) == ("node-1", "up 3 days")


def manager_migrate(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "manager_api.launcher.main", "migrate", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def test_manager_migrate_reports_applies_then_reports_again(target: str) -> None:
    if "://" not in target:
        Path(target).touch(mode=0o600)  # manager migrate opens a database, it does not create one
    flag = "--db-url" if "://" in target else "--db-path"  # as the manager is given its database
    pending = manager_migrate("--status", flag, target)
    assert (pending.returncode, pending.stderr) == (0, "")
    assert pending.stdout.splitlines() == [f"pending  {name}" for name in migration_names()]
    applied = manager_migrate(flag, target)
    assert (applied.returncode, applied.stderr) == (0, "")
    assert applied.stdout.splitlines() == [f"applied {name}" for name in migration_names()]
    again = manager_migrate(flag, target)
    assert (again.returncode, again.stdout.endswith("up to date, nothing to apply\n")) == (0, True)
    status = manager_migrate("--status", flag, target)
    assert [line.split()[:2] for line in status.stdout.splitlines()] == [
        ["applied", name] for name in migration_names()
    ]
    assert schema_drift(open_unmigrated(target)) == ""


def test_manager_migrate_fails_in_one_line_on_a_database_it_cannot_open(target: str, tmp_path: Path) -> None:
    if "://" in target:
        unopenable = target.rsplit("/", 1)[0] + "/corral_test_no_such_database"
        expected = 'database "corral_test_no_such_database" does not exist'
    else:
        unopenable = str(tmp_path / "not-a-database.db")
        Path(unopenable).write_text("these are not the pages of a SQLite database\n" * 100)
        expected = "file is not a database"
    for args in (["--db-path", unopenable], ["--status", "--db-path", unopenable]):
        answer = manager_migrate(*args)
        assert (answer.returncode, answer.stdout) == (1, "")
        assert answer.stderr.startswith("manager migrate: error: cannot open ") and expected in answer.stderr
        assert len(answer.stderr.splitlines()) == 1, answer.stderr
    missing = tmp_path / "missing.db"
    answer = manager_migrate("--db-path", str(missing))
    assert answer.returncode == 1 and not missing.exists()
    assert (
        answer.stderr == f"manager migrate: error: no database at {missing.resolve()} (give the manager's --db-path)\n"
    )
