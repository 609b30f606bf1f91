"""The ``agent`` console script: parse the command line, configure logging, run the Agent."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from shared import cli_config, tls
from shared.defaults import AGENT_PORT, HEARTBEAT_INTERVAL, MANAGER_URL
from shared.paths import local_join_token_path

from .agent import Agent, watch_stop
from .data_dir import DataDirInUse, default_data_dir, default_root
from .labels import LABELS_ENV, parse_labels
from .settings import AgentSettings
from .tags import TAGS_ENV, parse_tags

logger = logging.getLogger(__name__)

TOKEN_ENV = "CORRAL_JOIN_TOKEN"
DOCKER_HOST_ENV = "CORRAL_DOCKER_HOST"
CAPACITY_ENV = {"cpu_count": "CORRAL_CPU_CORES", "memory_total_mb": "CORRAL_MEMORY_MB", "gpu_count": "CORRAL_GPUS"}
"""Environment variables that, like --cpu-cores, --memory-mb and --gpus, override detected capacity."""

SECRET_FLAGS = ("token",)
"""Flags --print-config shows as ***."""

SECRET_URL_FLAGS = ("redis_url", "manager_url")
"""Flags whose URL's password --print-config shows as ***."""

ALTERNATIVES = (("token", "token_file"),)
"""Flags that give one thing two ways: one on the command line sets aside the config file's other."""


def manager_address(manager_url: str) -> tuple[str, int]:
    """Host and port of the manager URL."""
    parts = urlsplit(manager_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {manager_url!r}")
    return parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine (localhost or a loopback address)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def advertised_ip(manager_url: str) -> str:
    """The source address this host would use to reach the manager (no packet is sent)."""
    host, port = manager_address(manager_url)
    try:
        info = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
        with socket.socket(info[0], socket.SOCK_DGRAM) as s:
            s.connect(info[4])
            return str(s.getsockname()[0])
    except OSError:
        return "127.0.0.1"


def token_source(token: str | None, token_file: Path | None, manager_url: str) -> Callable[[], str | None]:
    """Where the join token comes from; files are read again on every join attempt."""
    if token:
        return lambda: token
    from_env = os.environ.get(TOKEN_ENV)
    if from_env:
        return lambda: from_env
    path = token_file
    if path is None:
        host, port = manager_address(manager_url)
        if not is_loopback(host):
            return lambda: None
        # A manager on this host leaves its token here, maybe only after the agent started.
        path = local_join_token_path(port)
    found = path

    def read() -> str | None:
        try:
            return found.read_text().strip() or None
        except OSError:
            return None

    return read


def capacity_overrides(
    cpu_cores: float | None, memory_mb: int | None, gpus: int | None, environ: dict[str, str] | None = None
) -> dict[str, int | float]:
    """The capacity facts the flags (else CORRAL_CPU_CORES / CORRAL_MEMORY_MB / CORRAL_GPUS) set; raises ValueError."""
    env = os.environ if environ is None else environ
    given: dict[str, tuple[str, object]] = {
        "cpu_count": ("--cpu-cores", cpu_cores),
        "memory_total_mb": ("--memory-mb", memory_mb),
        "gpu_count": ("--gpus", gpus),
    }
    overrides: dict[str, int | float] = {}
    for fact, (flag, value) in given.items():
        if value is None and env.get(CAPACITY_ENV[fact]):
            flag, value = CAPACITY_ENV[fact], env[CAPACITY_ENV[fact]]
        if value is None:
            continue
        try:
            number = float(str(value)) if fact == "cpu_count" else int(str(value))
        except ValueError:
            raise ValueError(f"{flag} must be a number, got {value!r}") from None
        if number < 0 or (fact == "cpu_count" and number == 0):
            raise ValueError(f"{flag} must be {'above' if fact == 'cpu_count' else 'at least'} 0, got {value!r}")
        overrides[fact] = int(number) if float(number).is_integer() else number
    return overrides


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="agent", description="corral agent: runs the tasks of one node.")
    cli_config.add_config_flags(parser)
    _join_flags(parser.add_argument_group("joining the manager"))
    _node_flags(parser.add_argument_group("this node"))
    _offer_flags(parser.add_argument_group("what the node offers components"))
    return parser


def _join_flags(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--manager-url", default=MANAGER_URL, help="manager address (default %(default)s)")
    group.add_argument("--token", help=f"join token (else ${TOKEN_ENV}, else --token-file)")
    group.add_argument("--token-file", type=Path, help="file holding the join token, read on every join attempt")
    group.add_argument(
        "--ca-bundle",
        type=Path,
        help=f"PEM CA bundle the manager's https:// and Redis' rediss:// certificates are verified against "
        f"(else ${tls.CA_BUNDLE_ENV}, else the system's CAs)",
    )
    group.add_argument(
        "--redis-url", help="development and tests: skip joining the manager and work this Redis directly"
    )


def _node_flags(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--hostname", default=socket.gethostname(), help="hostname to report (default: this host's)")
    group.add_argument("--ip", help="IP to advertise (default: the address used to reach the manager)")
    group.add_argument(
        "--label",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"a label of this node, repeatable (added to ${LABELS_ENV}, e.g. role=web,zone=a)",
    )
    group.add_argument(
        "--tag",
        action="append",
        default=[],
        metavar="TAG",
        help=f"a tag of this node, repeatable (added to ${TAGS_ENV}, e.g. appserver,ssd); node queries name them",
    )
    group.add_argument(
        "--data-dir",
        type=Path,
        help=f"node id, task records and task logs, one agent each (default: {default_root()} for this host's "
        f"own hostname, else {default_root()}/hosts/<--hostname>)",
    )
    group.add_argument(
        "--interval",
        type=float,
        default=HEARTBEAT_INTERVAL,
        help="seconds between heartbeats (default %(default)s)",
    )
    group.add_argument(
        "--port",
        type=int,
        help=f"local health port on 127.0.0.1, 0 = any (default {AGENT_PORT}, or any free port when it is taken)",
    )
    group.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])


def _offer_flags(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--cpu-cores", type=float, help="CPU cores to offer components (else $CORRAL_CPU_CORES, else detected)"
    )
    group.add_argument(
        "--memory-mb", type=int, help="memory in MB to offer components (else $CORRAL_MEMORY_MB, else detected)"
    )
    group.add_argument("--gpus", type=int, help="GPUs to offer components (else $CORRAL_GPUS, else nvidia-smi's count)")
    group.add_argument(
        "--docker-host",
        default=os.environ.get(DOCKER_HOST_ENV),
        help=f"Docker Engine API for docker components (else ${DOCKER_HOST_ENV}, else $DOCKER_HOST, else the default)",
    )
    group.add_argument("--sftp-key", type=Path, help="private key for sftp:// image URLs")
    group.add_argument(
        "--sftp-known-hosts", type=Path, help="known_hosts for sftp:// image URLs (unknown host keys are refused)"
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``agent`` console script."""
    parser = build_parser()
    args = cli_config.parse_args(parser, argv, ALTERNATIVES)
    if args.print_config:
        print(cli_config.effective_config(parser, args, SECRET_FLAGS, SECRET_URL_FLAGS), end="")
        return 0
    logging.basicConfig(
        level=args.log_level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not 0.1 <= args.interval <= 3600:
        logger.error("--interval must be between 0.1 and 3600 seconds, got %s", args.interval)
        return 2
    try:
        manager_address(args.manager_url)
        if not args.hostname.strip() or any(c in args.hostname for c in "\0\n"):
            raise ValueError(f"--hostname must be a name, got {args.hostname!r}")
        if args.port is not None and not 0 <= args.port < 65536:
            raise ValueError(f"--port must be between 0 and 65535, got {args.port}")
        labels = parse_labels(args.label, os.environ.get(LABELS_ENV))
        tags = parse_tags(args.tag, os.environ.get(TAGS_ENV))
        capacity = capacity_overrides(args.cpu_cores, args.memory_mb, args.gpus)
        ca_bundle = tls.ca_bundle(args.ca_bundle)
        if ca_bundle:
            # A missing or unreadable bundle stops the agent now, not at each join. Without one there is nothing
            # to check: the system's CAs cost 20 ms of CPU to load, which 50 agents starting at once feel.
            tls.client_context(ca_bundle)
        settings = AgentSettings(
            data_dir=(args.data_dir or default_data_dir(args.hostname)).absolute(),
            hostname=args.hostname,
            ip=args.ip or advertised_ip(args.manager_url),
            interval=args.interval,
            port=args.port,
            manager_url=args.manager_url,
            token=token_source(args.token, args.token_file, args.manager_url),
            redis_url=args.redis_url,
            labels=labels,
            tags=tags,
            docker_host=args.docker_host or None,
            sftp_key=args.sftp_key,
            sftp_known_hosts=args.sftp_known_hosts,
            capacity=capacity,
            ca_bundle=ca_bundle,
        )
        agent = Agent(settings)
    except DataDirInUse as exc:
        logger.error("agent cannot start: %s", exc)
        return 1
    except (OSError, ValueError) as exc:
        logger.error("agent cannot start: %s", exc)
        return 2
    code = agent.run()
    watch_stop()  # the interpreter's own exit (atexit, threads) too: the stacks if that hangs
    return code


if __name__ == "__main__":
    sys.exit(main())
