"""gunicorn as the launcher's child: the socket it serves, its command line, waiting for it, stopping it."""

from __future__ import annotations

import errno
import logging
import os
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import manager_api
from manager_api.config import Settings
from manager_api.observability.processes import LAUNCHER_PID_VAR
from shared.api import HEALTH_PATH
from shared.child_processes import die_with_parent

logger = logging.getLogger(__name__)

WORKER_CLASS = "manager_api.http_server.worker.BufferingThreadWorker"
"""gunicorn's worker class, by its dotted path."""

THREADS = 8
"""Threads per gunicorn worker."""

READY_TIMEOUT = 60.0
"""Seconds gunicorn may take to answer its first health check before the manager gives up starting."""

STOP_TIMEOUT = 30.0
"""Seconds gunicorn has to stop after SIGTERM before it is killed."""

SOURCE_ROOT = str(Path(manager_api.__file__).resolve().parent.parent)
"""The directory ``manager_api`` was imported from (a checkout or site-packages)."""


class StartError(Exception):
    """The manager cannot start; the message says why (exit 1)."""


def bind_address(host: str, port: int) -> str:
    """``host:port``, an IPv6 host in brackets."""
    return f"[{host.strip('[]')}]:{port}" if ":" in host.strip("[]") else f"{host}:{port}"


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
        raise StartError(f"cannot listen on {bind_address(host, port)}: {reason}{hint}") from exc


def probe_url(sock: socket.socket, tls: bool = False) -> str:
    """The health URL of the API served on ``sock`` (a wildcard address is probed on loopback)."""
    host, port = sock.getsockname()[:2]
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1" if host == "0.0.0.0" else "::1"
    return f"{'https' if tls else 'http'}://{bind_address(host, port)}{HEALTH_PATH}"


def gunicorn_env(settings: Settings) -> dict[str, str]:
    """The workers' environment: this one without CORRAL_* variables, plus the settings and the source root."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CORRAL_")}
    env.update(settings.to_env())
    if "CORRAL_RUNTIME_DIR" in os.environ:
        env["CORRAL_RUNTIME_DIR"] = os.environ["CORRAL_RUNTIME_DIR"]
    # The workers' /metrics reads this process's tree (observability.processes).
    env[LAUNCHER_PID_VAR] = str(os.getpid())
    # Workers must import manager_api the way this process did, installed or from a checkout.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (SOURCE_ROOT, env.get("PYTHONPATH", "")) if p)
    return env


def gunicorn_command(fd: int, workers: int, log_level: str, tls: tuple[str, str] | None = None) -> list[str]:
    """The gunicorn command line serving the listening socket ``fd`` (over TLS with ``tls``' cert and key)."""
    tls_flags = ["--certfile", tls[0], "--keyfile", tls[1]] if tls else []
    return [
        sys.executable,
        "-m",
        "gunicorn",
        # The socket the launcher bound (listen()): gunicorn serves it, never binds a port itself.
        "--bind",
        f"fd://{fd}",
        "--workers",
        str(workers),
        # gthread whose main loop reads each request whole before a thread serves it: a client that sends
        # half a request and waits holds no thread (http_server.worker).
        "--worker-class",
        WORKER_CLASS,
        "--threads",
        str(THREADS),
        "--graceful-timeout",
        "10",
        # Its default control socket is one path per user: two managers on a host would clash.
        "--no-control-socket",
        "--log-level",
        log_level.lower(),
        # Server hooks: child_exit tells prometheus_client's multiprocess mode a worker is gone.
        "--config",
        "python:manager_api.http_server.hooks",
        *tls_flags,
        "manager_api.wsgi:app",
    ]


def start_gunicorn(
    listener: socket.socket, settings: Settings, workers: int, tls: tuple[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """gunicorn serving ``listener`` in a session of its own, stopped by the kernel if the launcher dies."""
    fd = listener.fileno()
    process = subprocess.Popen(
        gunicorn_command(fd, workers, settings.log_level, tls),
        env=gunicorn_env(settings),
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        preexec_fn=die_with_parent,
        pass_fds=(fd,),
    )
    logger.info("gunicorn (pid %d) started", process.pid)
    return process


def wait_until_serving(
    process: subprocess.Popen[bytes], url: str, stopping: Callable[[], bool], context: ssl.SSLContext | None = None
) -> bool:
    """Whether gunicorn answers ``url``; False if it died, ``stopping()`` turned true or time ran out."""
    deadline = time.monotonic() + READY_TIMEOUT
    while not stopping():
        if process.poll() is not None:
            logger.error("gunicorn (pid %d) died with code %s while starting", process.pid, process.returncode)
            return False
        try:
            with urllib.request.urlopen(url, timeout=2, context=context) as answer:
                if answer.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            logger.error("gunicorn did not answer %s within %.0f s", url, READY_TIMEOUT)
            return False
        time.sleep(0.05)
    return False


def stop_gunicorn(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if gunicorn has not stopped within STOP_TIMEOUT."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        logger.error("gunicorn (pid %d) did not stop; killing it", process.pid)
        process.kill()
        process.wait()
