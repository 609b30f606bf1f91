"""The agent's main loop: join, connect, requeue orphans, recover tasks, heartbeat, work the node queue."""

from __future__ import annotations

import errno
import faulthandler
import logging
import os
import signal
import threading
from functools import partial
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from redis import Redis
from redis.exceptions import RedisError

from shared import keys, report_streams, tls
from shared.defaults import AGENT_PORT, PROTOCOL_VERSION

from . import jobs, metrics
from .agent_schedules.firing import AgentSchedules
from .data_dir import APPS_FILE, COMPONENTS_FILE, DataDirLock, record_hostname, secure_data_dir
from .deployment_tasks.supervisor import Supervisor
from .fleet_commands.runner import CommandRunner
from .heartbeat import HeartbeatThread
from .identity import load_or_create_node_id, load_or_create_node_secret
from .join import MAX_RETRY_SECONDS, join
from .on_demand import OnDemand
from .settings import AgentSettings, agent_version
from .status_port import StatusServer
from .worker import AgentWorker, requeue_orphaned_jobs

if TYPE_CHECKING:
    from .app_instances.manager import AppInstances
    from .components.manager import ComponentManager

logger = logging.getLogger(__name__)

REDIS_SOCKET_TIMEOUT = 5.0
"""Seconds a heartbeat or event write may hang on Redis before it counts as failed."""
REDIS_TIMEOUTS = {"socket_timeout": REDIS_SOCKET_TIMEOUT, "socket_connect_timeout": REDIS_SOCKET_TIMEOUT}
STACKS_SIGNAL = signal.SIGUSR1
"""``kill -USR1 <agent pid>`` writes every thread's stack to the agent's log (stderr) and the agent goes on."""
SLOW_STOP_SECONDS = 20.0
"""A stop still under way this long after SIGTERM/SIGINT writes every thread's stack to the log, once: a stop
that hangs says where (a clean stop takes well under a second)."""


def watch_stop(seconds: float = SLOW_STOP_SECONDS) -> None:
    """Arm the slow-stop dump (faulthandler's own C thread: nothing here can block on a Python lock)."""
    faulthandler.dump_traceback_later(seconds, repeat=False, exit=False)


def _recover_and_watch(manager: ComponentManager | AppInstances) -> None:
    manager.recover()
    manager.start_monitor()


class ShutdownRequested(BaseException):
    """Raised by the agent's signal handler outside RQ's work loop (joining, connecting, recovering).

    A BaseException, so that no ``except Exception`` on the way (urllib, redis-py) swallows it.
    """


class Agent:
    """One node's agent; ``run()`` must be called from the main thread (signals, RQ's warm shutdown)."""

    def __init__(self, settings: AgentSettings) -> None:
        self.settings = settings
        # Absolute: task wrappers run in their own directories and are handed paths under this one.
        self.data_dir = Path(settings.data_dir).absolute()
        # First of all: one agent per data directory, or two agents would be one node (DataDirInUse).
        self._lock = DataDirLock(self.data_dir).acquire(settings.hostname)
        record_hostname(self.data_dir, settings.hostname)
        self.node_id = load_or_create_node_id(self.data_dir)
        # Before any secret is written or sent: fix what an older agent left open to other users.
        secure_data_dir(self.data_dir, self.node_id)
        self.node_secret = load_or_create_node_secret(self.data_dir)
        self.job_key: bytes | None = None  # from the join answer: only jobs signed with it run
        self.supervisor = Supervisor(self.data_dir, self.node_id, self._publish, redis=lambda: self.redis)
        self.commands = CommandRunner(self.data_dir, self.node_id, lambda: self.redis, lambda: self.job_key)
        self.agent_schedules = AgentSchedules(
            self.data_dir, self.node_id, self.commands.run, self.commands.keep_scripts
        )
        # Made at their first job (or scrape) unless this data directory holds records of theirs, or Docker
        # components are looked for even without records (--docker-host): until then neither module is imported.
        self._components = OnDemand(self._make_components)
        self._instances = OnDemand(self._make_instances)
        if (self.data_dir / COMPONENTS_FILE).exists() or settings.docker_host:
            self._components.get()
        if (self.data_dir / APPS_FILE).exists():
            self._instances.get()
        self.joined = False
        self.redis: Redis | None = None
        self._redis_url = ""
        self.status_port: StatusServer | None = None
        self._heartbeat: HeartbeatThread | None = None
        self._worker: AgentWorker | None = None
        self._heartbeat_failing = False
        self._scrape: Any = None  # the /metrics registry, made at the first scrape (_metrics)
        self.last_figures: dict[str, Any] | None = None
        """The figures of the last heartbeat (None before the first): the status port's /metrics shows them."""
        self._stop = threading.Event()
        self._recovered = False
        self._generation = 0
        self._taking_jobs = True
        """Whether the last worker took jobs when it ended: its successor starts from there."""

    def _make_components(self) -> ComponentManager:
        from .components.image_fetch import SftpSettings
        from .components.manager import ComponentManager

        return ComponentManager(
            self.data_dir,
            self.node_id,
            self._publish_component,
            usage_interval=self.settings.interval,
            docker_host=self.settings.docker_host,
            sftp=SftpSettings(self.settings.sftp_key, self.settings.sftp_known_hosts),
            redis=lambda: self.redis,
            key=lambda: self.job_key,
        )

    def _make_instances(self) -> AppInstances:
        from .app_instances.manager import AppInstances
        from .components.image_fetch import SftpSettings

        return AppInstances(
            self.data_dir,
            self.node_id,
            self._publish_instance,
            redis=lambda: self.redis,
            key=lambda: self.job_key,
            host=self.settings.hostname,
            sftp=SftpSettings(self.settings.sftp_key, self.settings.sftp_known_hosts),
        )

    @property
    def components(self) -> ComponentManager:
        """The node's business components (made at this first use if not yet)."""
        return self._components.get()

    @property
    def instances(self) -> AppInstances:
        """The node's app instances (made at this first use if not yet)."""
        return self._instances.get()

    @classmethod
    def from_redis(cls, redis_url: str, data_dir: Path, **settings: Any) -> Agent:
        """An agent that works ``redis_url`` directly, without a manager (tests, development)."""
        return cls(AgentSettings(data_dir=Path(data_dir), redis_url=redis_url, **settings))

    def status(self) -> dict[str, Any]:
        """What the health endpoint shows."""
        return {
            "node_id": self.node_id,
            "hostname": self.settings.hostname,
            "data_dir": str(self.data_dir),
            "joined": self.joined,
            "tasks_running": self.supervisor.running_count(),
            "commands_running": self.commands.running_count(),
            "app_instances_running": instances.running_count() if (instances := self._instances.made) else 0,
        }

    def run(self) -> int:
        """Work until SIGTERM/SIGINT; returns the process exit code. Task processes are left running."""
        try:
            self.status_port = self._serve_status()
        except OSError as exc:
            logger.error(
                "node %s: cannot serve health on 127.0.0.1:%s: %s (another agent on this host? --port 0 picks a "
                "free port)",
                self.node_id,
                AGENT_PORT if self.settings.port is None else self.settings.port,
                exc,
            )
            self._lock.release()
            return 1
        logger.info("node %s: agent started, health on 127.0.0.1:%s", self.node_id, self.status_port.port)
        try:
            # First: whoever sees the status port may send SIGTERM, and that must be a clean stop (exit 0).
            self._install_signal_handlers(raising=True)
            faulthandler.register(STACKS_SIGNAL, all_threads=True, chain=False)
            jobs.register(self.supervisor)
            jobs.register_commands(self.commands)
            jobs.register_agent_schedules(self.agent_schedules)
            jobs.register_components(self._components.get)
            jobs.register_instances(self._instances.get)
            # Before joining: what a previous agent's commands left behind is killed at once.
            self.commands.recover()
            self.commands.start()
            # From its own clock, before and without joining: the manager or Redis may be unreachable.
            self.agent_schedules.start()
            while not self._stop.is_set():
                answer = self._join()
                if answer is None:
                    break
                self._connect(answer["redis_url"])
                if not self._serve():
                    break
                logger.warning("node %s: worker stopped without a stop request; joining again", self.node_id)
                # No slower than the heartbeat: a node that reads online must be taking its jobs again soon.
                if self._stop.wait(min(MAX_RETRY_SECONDS, self.settings.interval)):
                    break
        except ShutdownRequested:
            pass
        finally:
            self._shutdown()
            faulthandler.cancel_dump_traceback_later()
        return 0

    def _serve_status(self) -> StatusServer:
        """The health endpoint on --port; without one, on 8081 or, when that is taken, on any free port."""
        serve = partial(StatusServer, status=self.status, metrics=self._metrics)
        if self.settings.port is not None:
            return serve(self.settings.port).start()
        try:
            return serve(AGENT_PORT).start()
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
        server = serve(0).start()
        logger.warning(
            "node %s: health port %d is taken (another agent on this host?); serving health on 127.0.0.1:%d "
            "instead (--port chooses)",
            self.node_id,
            AGENT_PORT,
            server.port,
        )
        return server

    def _metrics(self) -> tuple[str, bytes]:
        """The status port's /metrics answer. prometheus_client is imported at the first scrape, not at start:
        1.5 MB more per agent that nobody scrapes (issue 3 counts every idle agent's megabytes)."""
        from . import scrape

        if self._scrape is None:
            self._scrape = scrape.registry_of(self)
        return scrape.CONTENT_TYPE, scrape.render(self._scrape)

    def _join(self) -> dict[str, Any] | None:
        if self.settings.redis_url:
            self.job_key = self.settings.job_key
            if self.job_key is None:
                logger.warning("node %s: no manager, so no job key: jobs are not signature-checked", self.node_id)
            return {"redis_url": self.settings.redis_url, "queue": keys.node_queue(self.node_id)}
        request = {
            "node_id": self.node_id,
            "hostname": self.settings.hostname,
            "ip": self.settings.ip,
            "interval": self.settings.interval,
            "protocol": PROTOCOL_VERSION,
            "version": agent_version(),
            "facts": {
                **metrics.facts(self.settings.capacity),
                "labels": dict(self.settings.labels),
                "node": metrics.node_document(self.settings.hostname, self._agent_address(), self.settings.tags),
            },
            "node_secret": self.node_secret,
        }
        # Only https:// uses it, and loading the CAs costs 20 ms of CPU: none for a plain http:// manager.
        https = self.settings.manager_url.lower().startswith("https:")
        ca = tls.client_context(self.settings.ca_bundle) if https else None
        answer = join(self.settings.manager_url, request, self.settings.token, self._stop, context=ca)
        if answer is not None:
            self.job_key = bytes.fromhex(answer["job_key"])
        if answer is not None and answer["queue"] != keys.node_queue(self.node_id):
            logger.warning(
                "node %s: manager named queue %s, working %s",
                self.node_id,
                answer["queue"],
                keys.node_queue(self.node_id),
            )
        return answer

    def _agent_address(self) -> str:
        """The URL of this agent's status port at its advertised IP (document 003 §5.1.1 ``agentAddress``)."""
        port = self.status_port.port if self.status_port is not None else AGENT_PORT
        host = f"[{self.settings.ip}]" if ":" in self.settings.ip else self.settings.ip
        return f"http://{host}:{port}"

    def _connect(self, redis_url: str) -> None:
        if self.redis is not None:
            self.redis.close()
        self._redis_url = redis_url
        self.redis = tls.redis_from_url(redis_url, self.settings.ca_bundle, **REDIS_TIMEOUTS)

    def _serve(self) -> bool:
        """Run the worker on the node queue; True when it stopped for another reason than a stop request."""
        assert self.redis is not None
        # RQ raises its socket timeout above its blocking dequeue: the worker gets a connection of its own.
        worker_redis = tls.redis_from_url(self._redis_url, self.settings.ca_bundle)
        try:
            requeue_orphaned_jobs(worker_redis, self.node_id)
            self._recover_once()
            self._heartbeat = HeartbeatThread(
                self.redis,
                self.node_id,
                self.settings.interval,
                self._figures,
                failing=self._heartbeat_failing,
                key=self.job_key,
            ).start()
            self.joined = True
            worker = self._worker = self._new_worker(worker_redis)
            cause = "stopped"
            try:
                worker.work(logging_level=None)
            except RedisError as exc:
                logger.warning("node %s: worker lost Redis: %s", self.node_id, exc)
                cause = "lost Redis"
            except Exception:
                logger.exception("node %s: worker failed", self.node_id)
                cause = "failed"
            # RQ leaves its own (cold shutdown) handlers behind; take the signals back.
            self._install_signal_handlers(raising=True)
            unrequested = not (worker.shutdown_requested or self._stop.is_set())
            if unrequested:
                # RQ ends its loop on a Redis error outside its reconnect wait (marking a state, checking for
                # suspension): the next worker takes over, and says when it takes jobs again.
                worker.stopped(cause)
            self._taking_jobs = worker.taking_jobs
            return unrequested
        except RedisError as exc:
            logger.warning("node %s: Redis unavailable while starting the worker: %s", self.node_id, exc)
            return True
        finally:
            self.joined = False
            self._worker = None
            if self._heartbeat is not None:
                self._heartbeat.stop()
                # One warning and one "written again" per outage, even when the worker rejoins meanwhile.
                self._heartbeat_failing = self._heartbeat.failing
                self._heartbeat = None
            worker_redis.close()

    def _new_worker(self, worker_redis: Redis) -> AgentWorker:
        """The RQ worker of this (re)join, named apart from those before it in this process."""
        name = f"{self.node_id}.{os.getpid()}" + (f".{self._generation}" if self._generation else "")
        self._generation += 1
        worker = AgentWorker(
            self.node_id,
            connection=worker_redis,
            name=name,
            job_key=self.job_key,
            reconnect_max_seconds=self.settings.interval,
            taking_jobs=self._taking_jobs,
        )
        # The node's summary says at once when its worker stops or starts taking jobs again.
        worker.on_taking_changed = lambda _taking: self._heartbeat.beat() if self._heartbeat else None
        worker.on_stop_requested = watch_stop  # RQ's own handlers take the signals while it works
        return worker

    def _recover_once(self) -> None:
        """At the first connection only: take back the tasks, components and instances a previous agent left."""
        if not self._recovered:
            self.supervisor.recover()
            self.supervisor.start_monitor()
            # Those made later (at their first job) take back nothing: they start their monitor as they are made.
            self._components.prepare_with(_recover_and_watch)
            self._instances.prepare_with(_recover_and_watch)
            self._recovered = True

    def _figures(self) -> dict[str, Any]:
        figures = metrics.collect(
            self.settings.interval, self.settings.hostname, self.settings.ip, self.supervisor.running_count()
        )
        worker = self._worker
        figures["taking_jobs"] = worker is None or worker.taking_jobs
        # The version of the agent-side schedule set it holds: the schedule's detail shows who has the latest.
        figures["agent_schedules_version"] = self.agent_schedules.version
        self.last_figures = figures
        return figures

    def _publish(self, event: dict[str, Any]) -> None:
        if self.redis is None:
            raise ConnectionError("not connected to Redis yet")
        report_streams.publish(self.redis, event, key=self.job_key)

    def _publish_component(self, report: dict[str, Any]) -> None:
        if self.redis is None:
            raise ConnectionError("not connected to Redis yet")
        report_streams.publish_component_report(self.redis, report, key=self.job_key)

    def _publish_instance(self, report: dict[str, Any]) -> None:
        if self.redis is None:
            raise ConnectionError("not connected to Redis yet")
        report_streams.publish_instance_report(self.redis, report, key=self.job_key)

    def _install_signal_handlers(self, raising: bool) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        handler = self._on_signal_raise if raising else self._on_signal_quiet
        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    # Neither handler touches self._stop (a threading.Event): a handler runs in the main thread between two
    # bytecodes, possibly inside self._stop.wait() while it holds the Event's lock, and would deadlock.
    def _on_signal_raise(self, signum: int, frame: FrameType | None) -> None:
        logger.info("node %s: got %s", self.node_id, signal.Signals(signum).name)
        watch_stop()
        raise ShutdownRequested

    def _on_signal_quiet(self, signum: int, frame: FrameType | None) -> None:
        logger.info("node %s: got %s while shutting down", self.node_id, signal.Signals(signum).name)

    def _shutdown(self) -> None:
        self._install_signal_handlers(raising=False)
        logger.info(
            "node %s: agent shutting down; task processes, components and app instances keep running", self.node_id
        )
        self._stop.set()
        self.joined = False
        if self._heartbeat is not None:
            self._heartbeat.stop()
        self.supervisor.close()
        self.agent_schedules.close()  # before the runner: no firing into a closed runner
        self.commands.close()
        for made in (self._components.made, self._instances.made):
            if made is not None:
                made.close()
        jobs.register(None)
        jobs.register_commands(None)
        jobs.register_agent_schedules(None)
        jobs.register_components(None)
        jobs.register_instances(None)
        if self.status_port is not None:
            self.status_port.stop()
        if self.redis is not None:
            self.redis.close()
        # Last: until here this agent still wrote into the data directory.
        self._lock.release()
