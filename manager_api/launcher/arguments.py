"""The ``manager`` command's flags and the checks they pass before anything starts."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
from pathlib import Path
from urllib.parse import SplitResult, urlsplit

from manager_api import db
from manager_api.api import rate_limits
from manager_api.services import webhooks
from manager_api.services.alerts import delivery as alert_delivery
from shared import cli_config, defaults

logger = logging.getLogger(__name__)

SFTP_FORMAT = "sftp://user:password@host:port/path/"
"""What ``--sftp-host`` must look like (the manual's format)."""

EXIT_USAGE = 2
"""Exit code of a bad flag, as argparse uses."""


class UsageError(Exception):
    """A bad flag: exit 2 with its message."""


def parse_sftp(value: str) -> SplitResult:
    """Check the manual's ``sftp://user:password@host:port/path/`` format (raises UsageError)."""
    parts = urlsplit(value)
    try:
        port = parts.port
    except ValueError:
        port = None
    ok = (
        parts.scheme == "sftp"
        and bool(parts.username)
        and parts.password is not None
        and bool(parts.hostname)
        and port is not None
        and 0 < port < 65536
        and parts.path.startswith("/")
        and parts.path.endswith("/")
        and not parts.query
        and not parts.fragment
    )
    if not ok:
        raise UsageError(f"--sftp-host must look like {SFTP_FORMAT}")
    return parts


def redact_sftp(parts: SplitResult) -> str:
    """The SFTP address without its password, for logs."""
    return f"sftp://{parts.username}:***@{parts.hostname}:{parts.port}{parts.path}"


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the API on this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def build_parser() -> argparse.ArgumentParser:
    """The ``manager`` command's flags."""
    parser = argparse.ArgumentParser(
        prog="manager",
        description="corral manager: REST API, task dispatch, duties",
        epilog="manager backup FILE: copy the database consistently while the manager runs (manager backup --help)",
    )
    cli_config.add_config_flags(parser)
    parser.add_argument("--port", type=int, default=defaults.MANAGER_PORT, help="HTTP port of the API (8080)")
    parser.add_argument("--host", default=defaults.MANAGER_HOST, help="address to bind (127.0.0.1)")
    parser.add_argument("--db-path", default=defaults.DB_PATH, help="SQLite database file (resource_monitor.db)")
    parser.add_argument(
        "--db-url",
        help="PostgreSQL database instead of SQLite: postgresql://user[:password]@host[:port]/db "
        "(the data directory, for the join token and metrics, stays that of --db-path)",
    )
    parser.add_argument("--sftp-host", help=f"SFTP server for file distribution: {SFTP_FORMAT}")
    parser.add_argument("--redis-url", help="external Redis; default: start a private redis-server")
    parser.add_argument("--agent-redis-url", help="Redis URL handed to agents when it differs from --redis-url")
    parser.add_argument("--api-token", help="bearer token required on the API (also env CORRAL_API_TOKEN)")
    parser.add_argument("--api-token-file", help="file holding the API token")
    parser.add_argument(
        "--alert-url",
        action="append",
        metavar="URL",
        help="webhook URL alerts are POSTed to; repeat for several (also env CORRAL_ALERT_URLS, space separated)",
    )
    parser.add_argument("--alert-secret-file", metavar="FILE", help="file holding the alerts' HMAC-SHA256 secret")
    # Secret env (services.secret_store): kept apart from the database, so a dump alone reveals no secret.
    parser.add_argument(
        "--secrets-key-file", metavar="FILE", help="key file of secret env (secrets.key in the data directory)"
    )
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes (2)")
    add_limit_flags(parser)
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    from manager_api.launcher.tls import add_tls_flags  # noqa: PLC0415 - tls imports UsageError from here

    add_tls_flags(parser)
    return parser


def add_limit_flags(parser: argparse.ArgumentParser) -> None:
    """Rate and size limits (manager_api/api/rate_limits.py, manager_api/body_limits.py). Unset, each comes from
    its CORRAL_* variable, else its default."""
    parser.add_argument(
        "--rate-limit",
        metavar="RATE",
        help=f"requests per bearer token (else per client address) on the API, e.g. 200/second, or off "
        f"({defaults.RATE_LIMIT})",
    )
    parser.add_argument(
        "--join-rate-limit",
        metavar="RATE",
        help=f"agent joins per client address, or off ({defaults.JOIN_RATE_LIMIT})",
    )
    parser.add_argument(
        "--max-body-bytes",
        type=int,
        metavar="BYTES",
        help=f"largest request body; the join takes at most {defaults.JOIN_MAX_BODY_BYTES} ({defaults.MAX_BODY_BYTES})",
    )


def limit_settings(args: argparse.Namespace) -> dict[str, object]:
    """The Settings fields the limit flags given set (raises UsageError on a bad value)."""
    out: dict[str, object] = {}
    for name in ("rate_limit", "join_rate_limit"):
        value = getattr(args, name)
        # A CORRAL_* value is checked here too: a bad one would stop every gunicorn worker at its start.
        checked = value if value is not None else os.environ.get(f"CORRAL_{name.upper()}")
        problem = rate_limits.check_limit(str(checked), "--" + name.replace("_", "-")) if checked else None
        if problem:
            raise UsageError(problem)
        if value is not None:
            out[name] = str(value)
    if args.max_body_bytes is not None:
        if args.max_body_bytes < 1024:
            raise UsageError("--max-body-bytes must be at least 1024")
        out["max_body_bytes"] = args.max_body_bytes
    return out


SECRET_FLAGS = ("api_token",)
"""Flags --print-config shows as ***."""

SECRET_URL_FLAGS = ("redis_url", "agent_redis_url", "sftp_host", "alert_url", "db_url")
"""Flags whose URL's password --print-config shows as ***."""

ALTERNATIVES = (("api_token", "api_token_file"),)
"""Flags that give one thing two ways: one on the command line sets aside the config file's other."""


def parse_args(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """The command line over the --config file (exits 2 on a bad file, as on a bad flag)."""
    return cli_config.parse_args(parser, argv, ALTERNATIVES)


def effective_config(parser: argparse.ArgumentParser, args: argparse.Namespace) -> str:
    """What --print-config prints."""
    return cli_config.effective_config(parser, args, SECRET_FLAGS, SECRET_URL_FLAGS)


def configured_database(manager_parser: argparse.ArgumentParser, parser: argparse.ArgumentParser, path: str) -> str:
    """The database a manager's config file names: its db-url, else its db-path, else the default. A file the
    manager would refuse is refused here too (``parser`` exits 2 naming the problem)."""
    try:
        config = cli_config.read_config_file(manager_parser, path)
    except cli_config.ConfigFileError as exc:
        parser.error(str(exc))
    return str(config.get("db_url") or config.get("db_path") or defaults.DB_PATH)


def chosen_database(
    args: argparse.Namespace, manager_parser: argparse.ArgumentParser, parser: argparse.ArgumentParser
) -> str:
    """The database a manager subcommand (migrate, secrets) works on: its --db-url, else its --db-path, else the
    one its --config names, else the default."""
    chosen = args.db_url or args.db_path
    if chosen is None and args.config is not None:
        chosen = configured_database(manager_parser, parser, args.config)
    return str(chosen or defaults.DB_PATH)


def resolve_api_token(args: argparse.Namespace) -> str | None:
    """--api-token, else --api-token-file, else CORRAL_API_TOKEN."""
    if args.api_token:
        return str(args.api_token).strip() or None
    if args.api_token_file:
        try:
            return Path(args.api_token_file).read_text().strip() or None
        except OSError as exc:
            raise UsageError(f"cannot read --api-token-file {args.api_token_file}: {exc}") from exc
    return os.environ.get("CORRAL_API_TOKEN", "").strip() or None


def checked_alerts(args: argparse.Namespace) -> tuple[list[str], str | None]:
    """The webhook URLs (--alert-url, else CORRAL_ALERT_URLS) and the secret file's absolute path (raises UsageError).

    URLs need a secret: an unsigned alert could be forged by anyone who can reach the receiver.
    """
    urls = list(args.alert_url or []) or alert_delivery.parse_urls(os.environ.get("CORRAL_ALERT_URLS"))
    for url in urls:
        problem = webhooks.check_url(url)
        if problem:
            raise UsageError(f"--alert-url: {problem}")
    if not urls:
        return [], None
    if not args.alert_secret_file:
        raise UsageError("--alert-url needs --alert-secret-file (the secret alerts are signed with)")
    path = Path(args.alert_secret_file).resolve()
    try:
        secret = path.read_bytes().strip()
    except OSError as exc:
        raise UsageError(f"cannot read --alert-secret-file {args.alert_secret_file}: {exc.strerror}") from exc
    if not secret:
        raise UsageError(f"--alert-secret-file {args.alert_secret_file} is empty")
    return urls, str(path)


def checked_api_token(args: argparse.Namespace) -> str | None:
    """Check the flags together and answer the API token they give (raises UsageError)."""
    if not 0 < args.port < 65536:
        raise UsageError("--port must be between 1 and 65535")
    if args.workers < 1:
        raise UsageError("--workers must be at least 1")
    if args.db_url and not db.is_postgres(args.db_url):
        raise UsageError("--db-url must be a PostgreSQL URL: postgresql://user[:password]@host[:port]/database")
    if args.sftp_host:
        logger.info("sftp host %s", redact_sftp(parse_sftp(args.sftp_host)))
    limit_settings(args)
    api_token = resolve_api_token(args)
    if not is_loopback(args.host) and not api_token:
        raise UsageError(
            f"refusing to listen on {args.host} without an API token: "
            "pass --api-token, --api-token-file or set CORRAL_API_TOKEN"
        )
    return api_token
