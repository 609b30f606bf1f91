"""PostgreSQL for the tests: databases of their own on the machine's server, created and dropped by the tests.

``CORRAL_TEST_DB=postgresql`` runs the manager's tests and the end-to-end tests on PostgreSQL instead of SQLite
(.ci/run does both passes). The server is the machine's (``CORRAL_TEST_PG_URL``, by default
postgresql://root@127.0.0.1:5432/postgres, trust auth as Debian's test machines have it); nothing of it is
touched but the databases named ``corral_test_*`` these helpers create. A server that cannot be reached fails
the test, with how to start it: a PostgreSQL pass that silently ran on SQLite would prove nothing.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

import psycopg2
import pytest

MODE_ENV = "CORRAL_TEST_DB"
"""``postgresql``: the manager and end-to-end tests keep the manager's database in PostgreSQL."""

ADMIN_URL_ENV = "CORRAL_TEST_PG_URL"
ADMIN_URL = "postgresql://root@127.0.0.1:5432/postgres"
"""Where the tests create their databases (a role allowed to CREATE DATABASE)."""

PREFIX = "corral_test_"


def on_postgres() -> bool:
    """Whether this test run keeps the manager's database in PostgreSQL."""
    mode = os.environ.get(MODE_ENV, "sqlite").strip().lower()
    if mode not in ("sqlite", "postgresql"):
        raise RuntimeError(f"{MODE_ENV} must be sqlite or postgresql, not {mode!r}")
    return mode == "postgresql"


def admin_url() -> str:
    return os.environ.get(ADMIN_URL_ENV) or ADMIN_URL


def _admin() -> psycopg2.extensions.connection:
    try:
        conn = psycopg2.connect(admin_url(), connect_timeout=5)
    except psycopg2.OperationalError as exc:
        pytest.fail(
            f"PostgreSQL at {admin_url()} cannot be reached ({str(exc).strip()}): start it "
            f"(pg_ctlcluster --skip-systemctl-redirect 15 main start) or point {ADMIN_URL_ENV} at one",
            pytrace=False,
        )
    conn.autocommit = True  # CREATE/DROP DATABASE cannot run in a transaction
    return conn


def database_url(name: str) -> str:
    """The URL of database ``name`` on the tests' server."""
    parts = urlsplit(admin_url())
    return urlunsplit(parts._replace(path="/" + name))


def create_database(template: str | None = None) -> str:
    """A new empty database (a copy of ``template`` when given, which nobody may be connected to); its URL."""
    name = PREFIX + secrets.token_hex(6)
    conn = _admin()
    try:
        with conn.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    finally:
        conn.close()
    return database_url(name)


def drop_database(url: str) -> None:
    """Drop the database of ``url`` (one of ours), closing whatever is still connected to it."""
    name = urlsplit(url).path.lstrip("/")
    assert name.startswith(PREFIX), f"not a test database: {name}"
    conn = _admin()
    try:
        with conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        conn.close()


def database_name(url: str) -> str:
    return urlsplit(url).path.lstrip("/")


_created: dict[str, str] = {}
"""Databases made by database_for in this test session: key -> URL (dropped by drop_created)."""


def database_for(key: str) -> str:
    """The database of ``key`` (a manager's data directory), made on its first use: a manager started again
    on the same data directory finds the same database, as it would find its SQLite file."""
    url = _created.get(key)
    if url is None:
        url = _created[key] = create_database()
    return url


def drop_created() -> None:
    """Drop every database database_for made."""
    while _created:
        _key, url = _created.popitem()
        drop_database(url)


@contextmanager
def postgres_database() -> Iterator[str]:
    """A new empty database of one test's own (whatever CORRAL_TEST_DB says); yields its URL, drops it after."""
    url = create_database()
    try:
        yield url
    finally:
        drop_database(url)
