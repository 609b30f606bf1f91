"""The launcher's pure pieces: its flag checks, gunicorn's command line and environment, the listening socket."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

import manager_api
from manager_api.config import Settings
from manager_api.launcher.arguments import UsageError, build_parser, checked_api_token
from manager_api.launcher.gunicorn import (
    WORKER_CLASS,
    StartError,
    bind_address,
    gunicorn_command,
    gunicorn_env,
    listen,
    probe_url,
)
from manager_api.observability.processes import LAUNCHER_PID_VAR
from shared.api import HEALTH_PATH


def test_checked_api_token_refuses_bad_flags_and_an_open_api_without_a_token(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("CORRAL_API_TOKEN", raising=False)
    parser = build_parser()
    assert checked_api_token(parser.parse_args([])) is None
    assert checked_api_token(parser.parse_args(["--host", "0.0.0.0", "--api-token", " t "])) == "t"
    token_file = tmp_path / "token"
    token_file.write_text("from-file\n")
    assert checked_api_token(parser.parse_args(["--api-token-file", str(token_file)])) == "from-file"
    monkeypatch.setenv("CORRAL_API_TOKEN", "from-env")
    assert checked_api_token(parser.parse_args([])) == "from-env"
    monkeypatch.delenv("CORRAL_API_TOKEN")
    for flags, message in [
        (["--port", "0"], "--port must be between 1 and 65535"),
        (["--workers", "0"], "--workers must be at least 1"),
        (["--sftp-host", "ftp://x"], "--sftp-host must look like"),
        (["--host", "0.0.0.0"], "refusing to listen on 0.0.0.0 without an API token"),
        (["--api-token-file", str(tmp_path / "missing")], "cannot read --api-token-file"),
    ]:
        with pytest.raises(UsageError, match=message):
            checked_api_token(parser.parse_args(flags))


def test_gunicorn_serves_the_launchers_socket_with_the_buffering_worker() -> None:
    command = gunicorn_command(7, 3, "WARNING")
    assert command[command.index("--bind") + 1] == "fd://7"
    assert command[command.index("--workers") + 1] == "3"
    assert command[command.index("--worker-class") + 1] == WORKER_CLASS
    assert command[command.index("--log-level") + 1] == "warning"
    assert command[command.index("--config") + 1] == "python:manager_api.http_server.hooks"  # child_exit
    assert command[-1] == "manager_api.wsgi:app"


def test_gunicorn_env_holds_the_settings_and_imports_manager_api_from_where_the_launcher_did(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CORRAL_STRAY", "x")
    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    env = gunicorn_env(Settings(db_path="/data/db"))
    assert "CORRAL_STRAY" not in env
    # Besides the settings, the launcher's pid: the workers' /metrics reads its process tree.
    assert env.pop(LAUNCHER_PID_VAR) == str(os.getpid())
    assert {k: v for k, v in env.items() if k.startswith("CORRAL_")} == Settings(db_path="/data/db").to_env()
    root, rest = env["PYTHONPATH"].split(os.pathsep)
    assert (Path(root) / "manager_api" / "__init__.py").resolve() == Path(manager_api.__file__).resolve()
    assert rest == "/elsewhere"


def test_listen_binds_at_once_and_says_why_it_cannot() -> None:
    sock = listen("127.0.0.1", 0)
    try:
        port = sock.getsockname()[1]
        assert probe_url(sock) == f"http://127.0.0.1:{port}{HEALTH_PATH}"
        with pytest.raises(StartError, match=f"cannot listen on 127.0.0.1:{port}: .*another --port"):
            listen("127.0.0.1", port)
    finally:
        sock.close()
    assert bind_address("::1", 80) == "[::1]:80" and bind_address("[::1]", 80) == "[::1]:80"
    wildcard = socket.create_server(("0.0.0.0", 0))
    try:
        assert probe_url(wildcard).startswith("http://127.0.0.1:")
    finally:
        wildcard.close()
