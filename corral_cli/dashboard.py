"""``corral dashboard``: rq-dashboard (the optional ``[dashboard]`` extra) over the manager's Redis, one RQ queue
per node, on 127.0.0.1 only.

rq-dashboard's ``--disable-delete`` refuses deleting jobs and emptying registries, but still requeues failed jobs
and compacts queues, and a requeued job runs again on its node. So by default the dashboard reads through a Redis
ACL user of its own that may run read commands only, made for the session and deleted at its end: every write
it tries fails in Redis itself, whatever rq-dashboard's pages offer."""

from __future__ import annotations

import importlib.util
import os
import secrets
import signal
import subprocess
import sys
from pathlib import Path
from types import FrameType
from urllib.parse import quote, urlsplit, urlunsplit

import click
import redis

from shared import private_redis
from shared.child_processes import die_with_parent

from .context import EXIT_API

REDIS_URL_ENV = "CORRAL_REDIS_URL"
DEFAULT_PORT = 9181
"""rq-dashboard's own default port."""

READ_ONLY_RULES = ("~*", "&*", "+@read", "+@connection", "+info")
"""What the session's user may do: read every key (RQ's and corral's), PING/AUTH/HELLO, and INFO (its workers
page). No write command, no script, no ACL, no CONFIG."""


def read_only_user(admin: redis.Redis) -> tuple[str, str]:
    """Make a read-only ACL user of a random name and password; answers both."""
    name = f"corral-dashboard-{secrets.token_hex(4)}"
    password = secrets.token_urlsafe(24)
    admin.execute_command("ACL", "SETUSER", name, "on", f">{password}", *READ_ONLY_RULES)
    return name, password


def with_user(url: str, name: str, password: str) -> str:
    """``url`` with its credentials replaced by ``name:password``."""
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    netloc = f"{quote(name, safe='')}:{quote(password, safe='')}@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def manager_redis_url(redis_url: str | None, data_dir: Path | None) -> str:
    if redis_url and data_dir:
        raise click.UsageError("give --redis-url or --data-dir, not both")
    if redis_url:
        return redis_url
    if data_dir is None:
        raise click.UsageError(
            f"give --data-dir (the manager's data directory, where its database is) or --redis-url "
            f"[env {REDIS_URL_ENV}]"
        )
    try:
        return private_redis.recorded_url(data_dir)
    except (OSError, ValueError) as exc:
        raise click.UsageError(f"no private Redis recorded under --data-dir {data_dir}: {exc}") from exc


@click.command()
@click.option(
    "--redis-url",
    envvar=REDIS_URL_ENV,
    metavar="URL",
    show_envvar=False,
    help=f"Redis of the queues, redis://[user]:password@host:port/0 [env {REDIS_URL_ENV}].",
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="The manager's data directory (where its database is): its private Redis's port and password are there.",
)
@click.option("--port", type=click.IntRange(1, 65535), default=DEFAULT_PORT, show_default=True, help="HTTP port.")
@click.option(
    "--read-only/--as-given",
    default=True,
    show_default=True,
    help="Read through a read-only ACL user made for the session (the URL's user must be allowed ACL SETUSER), "
    "or --as-given: with the URL's own user and rights (e.g. an ACL user you made).",
)
def dashboard(redis_url: str | None, data_dir: Path | None, port: int, read_only: bool) -> None:
    """Browse the RQ queues (one per node), their jobs and workers in rq-dashboard on 127.0.0.1:PORT."""
    if importlib.util.find_spec("rq_dashboard") is None:
        raise click.ClickException("rq-dashboard is not installed: pip install 'corral[dashboard]'")
    url = manager_redis_url(redis_url, data_dir)
    admin = redis.Redis.from_url(url, socket_timeout=10)
    user = ""
    try:
        if read_only:
            try:
                user, password = read_only_user(admin)
            except redis.RedisError as exc:
                click.echo(
                    f"Error: cannot make a read-only Redis user ({exc}); --as-given uses the URL's own", err=True
                )
                sys.exit(EXIT_API)
            url = with_user(url, user, password)
        else:
            admin.ping()
        click.echo(
            f"rq-dashboard on http://127.0.0.1:{port}/ ({'read-only user ' + user if user else 'URL user as given'})",
            err=True,
        )
        sys.exit(run_dashboard(url, port))
    except redis.RedisError as exc:
        click.echo(f"Error: Redis: {exc}", err=True)
        sys.exit(EXIT_API)
    finally:
        if user:
            admin.acl_deluser(user)
        admin.close()


def run_dashboard(url: str, port: int) -> int:
    """Run rq-dashboard until it exits or this process gets SIGTERM or SIGINT; answers its exit code (0 when
    stopped by a signal). The URL goes in its environment: on its command line `ps` would show the password."""
    env = {**os.environ, "RQ_DASHBOARD_REDIS_URL": url}
    args = [
        sys.executable,
        "-m",
        "rq_dashboard",
        "--bind",
        "127.0.0.1",
        "--port",
        str(port),
        "--disable-delete",
        "--json",
    ]
    # die_with_parent: a corral killed outright (SIGKILL) takes its dashboard along, rather than leaving it serving.
    child = subprocess.Popen(args, env=env, preexec_fn=die_with_parent)
    stopped = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopped
        stopped = True
        child.terminate()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    code = child.wait()
    return 0 if stopped else code
