"""``manager``: a small supervisor that runs the private Redis, gunicorn and the duties thread."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

import redis

from manager_api.background.duties import Duties
from manager_api.config import Settings
from manager_api.db import init_db
from manager_api.launcher import backup, migrate, secrets_cmd
from manager_api.launcher.arguments import (
    EXIT_USAGE,
    UsageError,
    build_parser,
    checked_alerts,
    checked_api_token,
    effective_config,
    limit_settings,
    parse_args,
)
from manager_api.launcher.file_modes import secure_data_files
from manager_api.launcher.gunicorn import (
    StartError,
    bind_address,
    listen,
    probe_url,
    start_gunicorn,
    stop_gunicorn,
    wait_until_serving,
)
from manager_api.launcher.redis_server import PrivateRedis, RedisKeeper
from manager_api.launcher.secret_files import adopt_shared_join_token, ensure_join_token, publish_local_join_token
from manager_api.launcher.tls import checked_tls, probe_context, redis_ca
from manager_api.observability import multiprocess
from manager_api.services import secret_store
from manager_api.services.nodes import presence as node_presence
from manager_api.services.nodes import redis_users
from shared import cli_config, heartbeat
from shared.dir_lock import DirectoryInUse, DirLock

logger = logging.getLogger(__name__)

EXIT_FAILURE = 1
"""Exit code of a manager that could not start or lost a piece it cannot run without."""


class Launcher:
    """Starts the pieces in order, watches them, and stops them in reverse order."""

    def __init__(self, args: argparse.Namespace, api_token: str | None, tls: tuple[str, str] | None = None) -> None:
        self.args = args
        self.tls = tls
        """(cert, key) when the API is served over HTTPS (--tls-cert/--tls-key)."""
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
        """Start, watch until asked to stop or a piece fails, stop; the exit code."""
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        try:
            settings = self._start()
            if not self._wait_until_serving():
                code = 0 if self.stop_requested else EXIT_FAILURE
            else:
                self.duties = Duties(settings)
                self.duties.start()
                logger.info(
                    "manager listening on %s://%s (database %s, %d workers, api token %s)",
                    "https" if self.tls else "http",
                    bind_address(self.args.host, self.args.port),
                    cli_config.hide_url_password(settings.db_path),
                    self.args.workers,
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

    def _start(self) -> Settings:
        """Everything up to gunicorn started; the settings the pieces run with."""
        args = self.args
        db_path = Path(args.db_path).resolve()
        data_dir = db_path.parent
        # With --db-url the database is PostgreSQL's; the data directory (join token, metrics) stays --db-path's.
        database = args.db_url or str(db_path)
        # The order matters: take the port, then the data directory, and only then start anything
        # (Redis, gunicorn), publish the join token, and once gunicorn answers, announce and run duties.
        self.listener = listen(args.host, args.port)
        # Made 0700 when corral makes it; the database file 0600 before SQLite opens it (file_modes).
        secure_data_files(data_dir, None if args.db_url else db_path)
        if not args.redis_url:
            self._lock_data_dir(data_dir)
        init_db(database)
        # Before gunicorn and the duties: both write their samples there (observability.multiprocess).
        multiprocess.prepare(data_dir, args.port)
        join_token_file = ensure_join_token(data_dir)
        adopt_shared_join_token(join_token_file)
        redis_url = args.redis_url
        if not redis_url:
            # Every (re)start makes the node users again: ACL SETUSER keeps nothing on disk.
            # With --tls-cert the private Redis is TLS-only, with the API's certificate (agents get rediss://).
            ca = redis_ca(args, self.tls)
            redis_tls = (*self.tls, ca) if self.tls and ca else None
            self.redis = PrivateRedis(data_dir, args.host, on_start=redis_users.restore_all, tls=redis_tls)
            self.redis.start()
            redis_url = self.redis.url
        self.settings = self._settings(database, redis_url, join_token_file)
        # The port is this manager's now: no live manager's token can be replaced. Published before
        # gunicorn answers, so a manager that answers /healthz always has its token where agents look.
        publish_local_join_token(join_token_file, args.port)
        self.gunicorn = start_gunicorn(self.listener, self.settings, args.workers, self.tls)
        return self.settings

    def _settings(self, database: str, redis_url: str, join_token_file: Path) -> Settings:
        """The settings of gunicorn and the duties: the CORRAL_* variables, overridden by the flags."""
        alert_urls, alert_secret_file = checked_alerts(self.args)
        # Tuning without a flag (deadline slack, retention, offline intervals...) comes from CORRAL_*
        # variables; everything the flags say wins over them.
        return dataclasses.replace(
            Settings.from_env(),
            db_path=database,
            redis_url=redis_url,
            agent_redis_url=self.args.agent_redis_url,
            private_redis=self.redis is not None,
            redis_ca_bundle=redis_ca(self.args, self.tls),
            api_token=self.api_token,
            join_token_file=str(join_token_file),
            sftp_host=self.args.sftp_host,
            log_level=self.args.log_level,
            # The secret stays in its file: gunicorn workers get these settings too and never need it.
            alert_urls=" ".join(alert_urls) or None,
            alert_secret_file=alert_secret_file,
            **limit_settings(self.args),  # type: ignore[arg-type]
            # Resolved here once: every gunicorn worker and the duties read the same file.
            secrets_key_file=str(
                Path(self.args.secrets_key_file).resolve()
                if self.args.secrets_key_file
                else Path(join_token_file).resolve().parent / secret_store.KEY_FILE_NAME
            ),
        )

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
        url = probe_url(self.listener, tls=self.tls is not None)
        context = probe_context() if self.tls else None
        return wait_until_serving(self.gunicorn, url, lambda: self.stop_requested, context)

    def _watch(self) -> int:
        """Poll the pieces until a stop is asked for (0) or one of them cannot go on (EXIT_FAILURE)."""
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
        """Stop what was started, in reverse order."""
        logger.info("manager shutting down")
        if self.gunicorn is not None:
            stop_gunicorn(self.gunicorn)
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
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["backup"]:
        return backup.main(argv[1:], parser)
    if argv[:1] == ["migrate"]:
        return migrate.main(argv[1:], parser)
    if argv[:1] == ["secrets"]:
        return secrets_cmd.main(argv[1:], parser)
    args = parse_args(parser, argv)
    if args.print_config:
        print(effective_config(parser, args), end="")
        return 0
    logging.basicConfig(
        level=args.log_level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s",
    )
    try:
        api_token = checked_api_token(args)
        checked_alerts(args)
        tls = checked_tls(args)
        redis_ca(args, tls)
    except UsageError as exc:
        parser.print_usage(sys.stderr)
        print(f"manager: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return Launcher(args, api_token, tls).run()


if __name__ == "__main__":
    sys.exit(main())
