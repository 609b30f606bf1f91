"""A PostgreSQL database of a test's own on the machine's PostgreSQL, dropped after it.

Tests that must also hold on PostgreSQL take the ``postgres_url`` fixture (registered for every test package by
tests/conftest.py), or ``postgres_database()`` where a fixture's parameter picks the engine. An unreachable server
fails the test, never skips it: a skipped run would pass while checking nothing on PostgreSQL.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

HOST = "127.0.0.1"
PORT = 5432
USER = "root"  # trust authentication: no password
ADMIN_DATABASE = "postgres"
"""Where CREATE DATABASE and DROP DATABASE are sent from (a database cannot drop itself)."""

NAME_PREFIX = "corral_test_"
START_COMMAND = "pg_ctlcluster --skip-systemctl-redirect 15 main start"


def _admin_connection() -> Any:
    """An autocommit connection to ADMIN_DATABASE (CREATE/DROP DATABASE cannot run in a transaction)."""
    import psycopg2

    try:
        connection = psycopg2.connect(host=HOST, port=PORT, user=USER, dbname=ADMIN_DATABASE, connect_timeout=5)
    except psycopg2.OperationalError as exc:
        reason = " ".join(str(exc).split())
        pytest.fail(
            f"PostgreSQL is not reachable at {HOST}:{PORT} as {USER} ({reason}): start it with `{START_COMMAND}`",
            pytrace=False,
        )
    connection.autocommit = True
    return connection


@contextmanager
def postgres_database() -> Iterator[str]:
    """A new empty database named corral_test_<hex>; yields its URL, drops it (with any session left) after."""
    from psycopg2 import sql

    name = f"{NAME_PREFIX}{secrets.token_hex(6)}"
    admin = _admin_connection()
    try:
        with admin.cursor() as cursor:
            cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        try:
            yield f"postgresql://{USER}@{HOST}:{PORT}/{name}"
        finally:
            with admin.cursor() as cursor:
                # FORCE: a connection the test left open (a thread's, a killed process's) must not keep it.
                cursor.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    finally:
        admin.close()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """The URL of a PostgreSQL database of this test's own (postgres_database)."""
    with postgres_database() as url:
        yield url
