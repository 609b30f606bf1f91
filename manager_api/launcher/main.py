"""``manager``: a small supervisor that runs the private Redis, gunicorn and the duties thread."""

from __future__ import annotations

import argparse
import dataclasses
import errno
import ipaddress
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import FrameType
from urllib.parse import SplitResult, urlsplit

import redis

from manager_api.background.duties import Duties
from manager_api.config import Settings
from manager_api.db import init_db
from manager_api.launcher.children import die_with_parent
from manager_api.launcher.file_modes import secure_data_files
from manager_api.launcher.redis_server import PrivateRedis, RedisKeeper
from manager_api.launcher.secret_files import write_private
from manager_api.services.nodes import presence as node_presence
from manager_api.services.nodes import redis_users
from shared import defaults, heartbeat
from shared.api import HEALTH_PATH
from shared.dir_lock import DirectoryInUse, DirLock
from shared.paths import local_join_token_path

logger = logging.getLogger(__name__)

SFTP_FORMAT = "sftp://user:password@host:port/path/"
EXIT_USAGE = 2
EXIT_FAILURE = 1
GUNICORN_STOP_TIMEOUT = 30.0
WORKER_CLASS = "manager_api.http_server.worker.BufferingThreadWorker"
"""gunicorn's worker class, by its dotted path."""
GUNICORN_READY_TIMEOUT = 60.0
"""Seconds gunicorn may take to answer its first health check before the manager gives up starting."""


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
    parser = argparse.ArgumentParser(prog="manager", description="corral manager: REST API, task dispatch, duties")
    parser.add_argument("--port", type=int, default=defaults.MANAGER_PORT, help="HTTP port of the API (8080)")
    parser.add_argument("--host", default=defaults.MANAGER_HOST, help="address to bind (127.0.0.1)")
    parser.add_argument("--db-path", default=defaults.DB_PATH, help="SQLite database file (resource_monitor.db)")
    parser.add_argument("--sftp-host", help=f"SFTP server for file distribution: {SFTP_FORMAT}")
    parser.add_argument("--redis-url", help="external Redis; default: start a private redis-server")
    parser.add_argument("--agent-redis-url", help="Redis URL handed to agents when it differs from --redis-url")
    parser.add_argument("--api-token", help="bearer token required on the API (also env CORRAL_API_TOKEN)")
    parser.add_argument("--api-token-file", help="file holding the API token")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes (2)")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return parser


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


def ensure_join_token(data_dir: Path) -> Path:
    """The join token in ``<data dir>/join-token``, made once and never replaced (agents hold it)."""
    token_file = data_dir / "join-token"
    token = token_file.read_text().strip() if token_file.exists() else ""
    if not token:
        write_private(token_file, secrets.token_urlsafe(32) + "\n")
        logger.info("join token created in %s", token_file)
    return token_file


def publish_local_join_token(token_file: Path, port: int) -> Path:
    """Copy the join token where agents on this host look for the manager of ``port``.

    Called only once this manager holds the port: a manager that failed to bind must never replace the
    token of the one that runs there.
    """
    local = local_join_token_path(port)
    local.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(local.parent, 0o700)
    write_private(local, token_file.read_text().strip() + "\n")
    return local


def listen(host: str, port: int) -> socket.socket:
    """The API's listening socket, bound by the launcher before anything else starts and handed to gunicorn.

    Binding here first means a manager whose port is taken fails at once, before it starts a Redis, writes a
    shared file or runs a duty (gunicorn binding itself would retry for five seconds meanwhile).
    """
    try:
        family, _type, _proto, _name, address = socket.getaddrinfo(
            host.strip("[]"), port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        return socket.create_server(address, family=family, backlog=2048)
    except OSError as exc:
        hint = " (another manager? give this one another --port)" if exc.errno == errno.EADDRINUSE else ""
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        raise StartError(f"cannot listen on {_bind(host, port)}: {reason}{hint}") from exc


def probe_url(sock: socket.socket) -> str:
    """The health URL of the API served on ``sock`` (a wildcard address is probed on loopback)."""
    host, port = sock.getsockname()[:2]
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1" if host == "0.0.0.0" else "::1"
    return f"http://{_bind(host, port)}{HEALTH_PATH}"


class StartError(Exception):
    """The manager cannot start; the message says why (exit 1)."""


def _bind(host: str, port: int) -> str:
    return f"[{host.strip('[]')}]:{port}" if ":" in host.strip("[]") else f"{host}:{port}"


class Launcher:
    """Starts the pieces in order, watches them, and stops them in reverse order."""

    def __init__(self, args: argparse.Namespace, api_token: str | None) -> None:
        self.args = args
        self.api_token = api_token
        self.redis: PrivateRedis | None = None
        self.gunicorn: subprocess.Popen[bytes] | None = None
        self.duties: Duties | None = None
        self.settings: Settings | None = None
        self.listener: socket.socket | None = None
        self.dir_lock: DirLock | None = None
        self.stop_requested = False

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        # Only a flag: a signal handler runs in the main thread between two bytecodes, so taking a lock
        # here (threading.Event.set) can deadlock against the very code it interrupted.
        self.stop_requested = True

    def run(self) -> int:
        args = self.args
        db_path = Path(args.db_path).resolve()
        data_dir = db_path.parent
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        try:
            # The order matters: take the port, then the data directory, and only then start anything
            # (Redis, gunicorn), publish the join token, and once gunicorn answers, announce and run duties.
            self.listener = listen(args.host, args.port)
            # Made 0700 when corral makes it; the database file 0600 before SQLite opens it (file_modes).
            secure_data_files(data_dir, db_path)
            if not args.redis_url:
                self._lock_data_dir(data_dir)
            init_db(str(db_path))
            join_token_file = ensure_join_token(data_dir)
            redis_url = args.redis_url
            if not redis_url:
                # Every (re)start makes the node users again: ACL SETUSER keeps nothing on disk.
                self.redis = PrivateRedis(data_dir, args.host, on_start=redis_users.restore_all)
                self.redis.start()
                redis_url = self.redis.url
            # Tuning without a flag (deadline slack, retention, offline intervals...) comes from CORRAL_*
            # variables; everything the flags say wins over them.
            settings = dataclasses.replace(
                Settings.from_env(),
                db_path=str(db_path),
                redis_url=redis_url,
                agent_redis_url=args.agent_redis_url,
                private_redis=self.redis is not None,
                api_token=self.api_token,
                join_token_file=str(join_token_file),
                sftp_host=args.sftp_host,
                log_level=args.log_level,
            )
            self.settings = settings
            # The port is this manager's now: no live manager's token can be replaced. Published before
            # gunicorn answers, so a manager that answers /healthz always has its token where agents look.
            publish_local_join_token(join_token_file, args.port)
            self._start_gunicorn(settings)
            if not self._wait_until_serving():
                code = 0 if self.stop_requested else EXIT_FAILURE
            else:
                self.duties = Duties(settings)
                self.duties.start()
                logger.info(
                    "manager listening on http://%s (database %s, %d workers, api token %s)",
                    _bind(args.host, args.port),
                    db_path,
                    args.workers,
                    "on" if self.api_token else "off",
                )
                code = self._watch()
        except StartError as exc:
            logger.error("manager cannot start: %s", exc)
            code = EXIT_FAILURE
        except Exception as exc:
            logger.error("manager failed to start: %s", exc, exc_info=logger.isEnabledFor(logging.DEBUG))
            code = EXIT_FAILURE
        self._shutdown()
        return code

    def _redis_restarted(self, client: redis.Redis) -> None:
        """Before the restarted Redis opens its port: nobody could heartbeat while it was down, so the nodes
        online when it died get one offline window from now before any reader judges them (shared.heartbeat)."""
        assert self.settings is not None
        heartbeat.resume_judging(client, node_presence.known_ids(), self.settings.offline_after_intervals)

    def _lock_data_dir(self, data_dir: Path) -> None:
        """One manager with a private Redis per data directory: two would run two Redis on one AOF."""
        try:
            self.dir_lock = DirLock(data_dir / "manager.lock").acquire(f"manager on port {self.args.port}")
        except DirectoryInUse as exc:
            raise StartError(
                f"data directory {exc.directory} is in use by another manager ({exc.holder}); give this one "
                "another --db-path, or share one Redis between them with --redis-url"
            ) from None

    def _wait_until_serving(self) -> bool:
        """Whether gunicorn answers on the listener; False if it died, a stop was asked for or time ran out."""
        assert self.listener is not None and self.gunicorn is not None
        url = probe_url(self.listener)
        deadline = time.monotonic() + GUNICORN_READY_TIMEOUT
        while not self.stop_requested:
            if self.gunicorn.poll() is not None:
                logger.error(
                    "gunicorn (pid %d) died with code %s while starting", self.gunicorn.pid, self.gunicorn.returncode
                )
                return False
            try:
                with urllib.request.urlopen(url, timeout=2) as answer:
                    if answer.status == 200:
                        return True
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                logger.error("gunicorn did not answer %s within %.0f s", url, GUNICORN_READY_TIMEOUT)
                return False
            time.sleep(0.05)
        return False

    def _start_gunicorn(self, settings: Settings) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CORRAL_")}
        env.update(settings.to_env())
        if "CORRAL_RUNTIME_DIR" in os.environ:
            env["CORRAL_RUNTIME_DIR"] = os.environ["CORRAL_RUNTIME_DIR"]
        # Workers must import manager_api the way this process did, installed or from a checkout.
        source_root = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (source_root, env.get("PYTHONPATH", "")) if p)
        assert self.listener is not None
        fd = self.listener.fileno()
        cmd = [
            sys.executable,
            "-m",
            "gunicorn",
            # The socket this process bound (listen()): gunicorn serves it, never binds a port itself.
            "--bind",
            f"fd://{fd}",
            "--workers",
            str(self.args.workers),
            # gthread whose main loop reads each request whole before a thread serves it: a client that sends
            # half a request and waits holds no thread (http_worker).
            "--worker-class",
            WORKER_CLASS,
            "--threads",
            "8",
            "--graceful-timeout",
            "10",
            # Its default control socket is one path per user: two managers on a host would clash.
            "--no-control-socket",
            "--log-level",
            self.args.log_level.lower(),
            "manager_api.wsgi:app",
        ]
        self.gunicorn = subprocess.Popen(
            cmd,
            env=env,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=die_with_parent,
            pass_fds=(fd,),
        )
        logger.info("gunicorn (pid %d) started", self.gunicorn.pid)

    def _watch(self) -> int:
        keeper = RedisKeeper(self.redis, on_restart=self._redis_restarted) if self.redis is not None else None
        while not self.stop_requested:
            time.sleep(0.2)
            if self.gunicorn is not None and self.gunicorn.poll() is not None:
                logger.error("gunicorn (pid %d) died with code %s", self.gunicorn.pid, self.gunicorn.returncode)
                return EXIT_FAILURE
            if keeper is not None and not keeper.check():
                logger.error("private redis-server cannot be kept running; stopping the manager")
                return EXIT_FAILURE
            if self.duties is not None and not self.duties.is_alive():
                logger.error("duties thread ended unexpectedly")
                return EXIT_FAILURE
        return 0

    def _shutdown(self) -> None:
        logger.info("manager shutting down")
        if self.gunicorn is not None and self.gunicorn.poll() is None:
            self.gunicorn.send_signal(signal.SIGTERM)
            try:
                self.gunicorn.wait(GUNICORN_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                logger.error("gunicorn (pid %d) did not stop; killing it", self.gunicorn.pid)
                self.gunicorn.kill()
                self.gunicorn.wait()
        if self.duties is not None:
            self.duties.stop()
        if self.redis is not None:
            self.redis.stop()
        if self.listener is not None:
            self.listener.close()
        if self.dir_lock is not None:
            self.dir_lock.release()
        logger.info("manager stopped")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``manager`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s",
    )
    try:
        if not 0 < args.port < 65536:
            raise UsageError("--port must be between 1 and 65535")
        if args.workers < 1:
            raise UsageError("--workers must be at least 1")
        if args.sftp_host:
            logger.info("sftp host %s", redact_sftp(parse_sftp(args.sftp_host)))
        api_token = resolve_api_token(args)
        if not is_loopback(args.host) and not api_token:
            raise UsageError(
                f"refusing to listen on {args.host} without an API token: "
                "pass --api-token, --api-token-file or set CORRAL_API_TOKEN"
            )
    except UsageError as exc:
        parser.print_usage(sys.stderr)
        print(f"manager: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return Launcher(args, api_token).run()


if __name__ == "__main__":
    sys.exit(main())
