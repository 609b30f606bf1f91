"""``corral tasks`` and ``corral run``: fleet tasks, with live per-node output while they run."""

from __future__ import annotations

import http.client
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import click

from shared.defaults import DEADLINE_SLACK_SECONDS, TASK_TIMEOUT, TASK_TIMEOUT_MAX
from shared.states import FleetTaskStatus

from . import formatting
from .client import REQUEST_TIMEOUT, ApiError, Client
from .context import EXIT_FAILED, EXIT_INTERRUPTED, client_of, echo_json, echo_page, page_options
from .progress import ProgressLine
from .secret_options import secret_env_option
from .sse import parse_sse

logger = logging.getLogger(__name__)

ALL_NODES = "*"
"""The API's target for every online node; `--on all` means it."""

MAX_WAIT = 300
"""The most ``?wait=`` the API accepts, in seconds."""

PROGRESS_POLL_SECONDS = 1.0
"""How often the live progress line asks for the task's counters."""

STREAM_RETRIES = 3
"""Reconnections of a dropped output stream (resumed after the last line seen) before giving up."""

FINAL_STATUSES = frozenset({FleetTaskStatus.COMPLETED, FleetTaskStatus.FAILED, FleetTaskStatus.CANCELED})
"""Task statuses that never change again."""


QUERY_TARGET = "query:"
"""A target that is a node query (`corral nodes -q`'s language), as the API spells it."""


def parse_targets(values: Sequence[str]) -> list[str]:
    """``--on a,b --on c`` as the API's target list; ``all`` becomes ``*``; ``--on 'query:...'`` is one target
    whole (a node query, commas and all)."""
    targets: list[str] = []
    for value in values:
        if value.strip().startswith(QUERY_TARGET):
            targets.append(value.strip())
            continue
        for item in value.split(","):
            item = item.strip()
            if item:
                targets.append(ALL_NODES if item == "all" else item)
    if not targets:
        raise click.BadParameter("name at least one node, label or `all`", param_hint="--on")
    return list(dict.fromkeys(targets))


def parse_env(ctx: click.Context, param: click.Parameter, values: Sequence[str]) -> dict[str, str]:
    """``--env K=V`` options as a dict (click callback)."""
    env: dict[str, str] = {}
    for value in values:
        key, sep, val = value.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{value!r} is not KEY=VALUE")
        env[key] = val
    return env


F = TypeVar("F", bound=Callable[..., Any])


def fleet_command_options(on_help: str, timeout_help: str) -> Callable[[F], F]:
    """``--on``, ``--timeout``, ``--env`` and ``--secret-env``: where and how a fleet command runs (`run`,
    `schedule create`)."""

    def decorate(command: F) -> F:
        for option in reversed(
            (
                click.option("--on", "on", multiple=True, required=True, metavar="TARGET[,TARGET...]", help=on_help),
                click.option(
                    "--timeout",
                    type=click.IntRange(1, TASK_TIMEOUT_MAX),
                    default=TASK_TIMEOUT,
                    show_default=True,
                    help=timeout_help,
                ),
                click.option(
                    "--env", "env", multiple=True, callback=parse_env, metavar="KEY=VALUE", help="Environment (repeat)."
                ),
                secret_env_option,
            )
        ):
            command = option(command)
        return command

    return decorate


def fleet_body(
    name: str,
    command: str,
    on: Sequence[str],
    timeout: int,
    env: Mapping[str, str],
    secret_env: Mapping[str, str] | None = None,
    **more: Any,
) -> dict[str, Any]:
    """The request body of a fleet command (`run`, `schedule create`): ``more`` after the timeout, ``env`` and
    ``secretEnv`` if any."""
    body: dict[str, Any] = {"name": name, "command": command, "targets": parse_targets(on), "timeout": timeout, **more}
    if env:
        body["env"] = env
    if secret_env:
        body["secretEnv"] = dict(secret_env)
    return body


def is_final(task: Mapping[str, Any]) -> bool:
    return task.get("status") in FINAL_STATUSES


def wait_final(client: Client, task_id: str, first_wait: float = MAX_WAIT) -> dict[str, Any]:
    """The task once it reached a final status, asking the API to hold each answer up to 300 s."""
    wait = min(max(first_wait, 1.0), MAX_WAIT)
    while True:
        task: dict[str, Any] = client.get(f"/api/tasks/{task_id}", {"wait": wait}, timeout=wait + REQUEST_TIMEOUT)
        if is_final(task):
            return task
        wait = MAX_WAIT


class ProgressPoller(threading.Thread):
    """Refreshes the live progress line from the task's counters until stopped."""

    def __init__(self, client: Client, task_id: str, progress: ProgressLine) -> None:
        super().__init__(name=f"progress-{task_id}", daemon=True)
        self.client = client
        self.task_id = task_id
        self.progress = progress
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            try:
                self.progress.update(formatting.task_progress(self.client.get(f"/api/tasks/{self.task_id}")))
            except ApiError as exc:  # the final answer reports real errors; a missed refresh is harmless
                logger.debug("task %s: progress refresh failed: %s", self.task_id, exc)
            self.stopped.wait(PROGRESS_POLL_SECONDS)

    def stop(self) -> None:
        self.stopped.set()
        self.join(timeout=2.0)  # a daemon thread: never hold the exit up for a slow refresh


def follow_output(
    client: Client, task_id: str, progress: ProgressLine, width: int, to_stderr: bool = False
) -> str | None:
    """Print the task's output lines as they come; returns its final status, or None if the stream was lost."""
    path = f"/api/tasks/{task_id}/output"
    last_id: str | None = None
    failures = 0
    while True:
        try:
            with client.stream(path, last_id) as response:
                for event in parse_sse(response):
                    failures = 0
                    if event.id:
                        last_id = event.id
                    data = json.loads(event.data) if event.data else {}
                    if event.event == "line":
                        host = data.get("hostname") or data.get("node_id") or "?"
                        text = formatting.output_line(host, data.get("stream", ""), data.get("line", ""), width)
                        progress.echo(text, err=to_stderr)
                    elif event.event == "end":
                        return str(data.get("status"))
        except ApiError as exc:
            if exc.status:  # the API refused (e.g. 404): retrying will not help
                raise
            reason = str(exc)
        except (OSError, http.client.HTTPException, ValueError) as exc:
            reason = f"{type(exc).__name__}: {exc}"
        else:
            reason = "stream closed before the end of the task"
        failures += 1
        logger.debug("task %s: output stream lost (%s), attempt %d", task_id, reason, failures)
        if failures > STREAM_RETRIES:
            progress.echo(f"warning: live output lost ({reason}); waiting for the results", err=True)
            return None
        time.sleep(failures * 0.5)


def cancel_on_interrupt(client: Client, task_id: str, progress: ProgressLine) -> None:
    """Ask the API to cancel the task after Ctrl-C; say what happened on stderr."""
    progress.close()
    click.echo(f"\ninterrupted: canceling task {task_id}", err=True)
    try:
        task = client.post(f"/api/tasks/{task_id}/cancel")
        click.echo(f"task {task_id} {task.get('status')}", err=True)
    except ApiError as exc:
        click.echo(f"Error: cancel failed: {exc}", err=True)


def print_results(task: Mapping[str, Any]) -> None:
    """Every node's result, then one summary line."""
    hosts = task.get("hosts") or []
    if hosts:
        click.echo(formatting.results_table(hosts))
    c = formatting.progress_counts(task)
    summary = f"task {task.get('task_id')} {task.get('status')}: {c['succeeded']}/{c['total']} succeeded"
    if not hosts:
        summary += " (no node matched the targets)"
    click.echo(summary)


@click.command()
@click.argument("command")
@fleet_command_options(
    on_help="Node ids, hostnames, IPs, key=value labels, `all`, or query:QUERY (the nodes `corral nodes -q QUERY` "
    "lists, e.g. 'query:tags:web AND os.cpus:>2').",
    timeout_help="Seconds before the command is killed on each node.",
)
@click.option("--name", help="Fleet task name [default: the command].")
@click.option("--no-follow", is_flag=True, help="Do not stream output; wait and print the results.")
@click.option("--json", "as_json", is_flag=True, help="Print the final fleet task as JSON (live lines go to stderr).")
@click.pass_context
def run(
    ctx: click.Context,
    command: str,
    on: Sequence[str],
    timeout: int,
    env: dict[str, str],
    secret_env: dict[str, str],
    name: str | None,
    no_follow: bool,
    as_json: bool,
) -> None:
    """Run COMMAND on every target node as a fleet task and show each node's output and result.

    Output lines read `hostname | line` (`hostname [stderr] | line` for stderr). Exits 1 when any node
    did not succeed, 2 on a usage or API error, 130 after Ctrl-C (which cancels the fleet task).
    """
    if not command.strip():
        raise click.BadParameter("must not be empty", param_hint="COMMAND")
    client = client_of(ctx)
    body = fleet_body((name or command.strip())[:255], command, on, timeout, env, secret_env)
    progress = ProgressLine()
    if no_follow:
        wait = min(timeout + DEADLINE_SLACK_SECONDS, MAX_WAIT)
        task = client.post("/api/tasks", body, {"wait": wait}, timeout=wait + REQUEST_TIMEOUT)
    else:
        task = client.post("/api/tasks", body)
    task_id = task["task_id"]
    click.echo(f"task {task_id}: {task.get('total_hosts', len(task.get('hosts') or []))} host(s)", err=True)
    poller: ProgressPoller | None = None
    try:
        if not is_final(task):
            if not no_follow:
                if progress.live:
                    poller = ProgressPoller(client, task_id, progress)
                    poller.start()
                # Only nodes that got the command print lines; an unknown target must not widen the column.
                hostnames = [formatting.host_label(h) for h in task.get("hosts") or [] if h.get("host_id")]
                # With --json, stdout carries only the JSON document, so the live lines go to stderr.
                follow_output(client, task_id, progress, formatting.label_width(hostnames), to_stderr=as_json)
            task = wait_final(client, task_id, 5.0)
    except KeyboardInterrupt:
        if poller:
            poller.stopped.set()
        cancel_on_interrupt(client, task_id, progress)
        ctx.exit(EXIT_INTERRUPTED)
    finally:
        if poller:
            poller.stop()
        progress.close()
    if as_json:
        echo_json(task)
    else:
        print_results(task)
    ctx.exit(0 if formatting.succeeded(task) else EXIT_FAILED)


@click.group()
def tasks() -> None:
    """List, show and cancel fleet tasks."""


@tasks.command("list")
@click.option(
    "--status", type=click.Choice([s.value for s in FleetTaskStatus]), help="Only fleet tasks in this status."
)
@click.option("--name", help="Only fleet tasks whose name contains this.")
@page_options("fleet tasks", older="--size")
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON.")
@click.pass_context
def tasks_list(
    ctx: click.Context, status: str | None, name: str | None, page: int, page_size: int, as_json: bool
) -> None:
    """List fleet tasks, newest first."""
    # `size`: a manager from before `page_size` takes only that name
    answer = client_of(ctx).get("/api/tasks", {"status": status, "name": name, "page": page, "size": page_size})
    echo_page(answer, as_json, "tasks", formatting.tasks_table, ("task(s)", page, page_size))


@tasks.command("show")
@click.argument("task_id", metavar="ID")
@click.option("--output/--no-output", default=True, show_default=True, help="Print each node's stored output.")
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON.")
@click.pass_context
def tasks_show(ctx: click.Context, task_id: str, output: bool, as_json: bool) -> None:
    """Show fleet task ID with every node's result."""
    task = client_of(ctx).get(f"/api/tasks/{task_id}")
    if as_json:
        echo_json(task)
        return
    click.echo(formatting.task_summary(task))
    hosts = task.get("hosts") or []
    if hosts:
        click.echo()
        click.echo(formatting.results_table(hosts))
    if output:
        width = formatting.label_width([formatting.host_label(h) for h in hosts])
        lines = [
            formatting.output_line(formatting.host_label(h), stream, line, width)
            for h in hosts
            for stream, line in formatting.host_output(h)
        ]
        if lines:
            click.echo()
            click.echo("\n".join(lines))


@tasks.command("cancel")
@click.argument("task_id", metavar="ID")
@click.pass_context
def tasks_cancel(ctx: click.Context, task_id: str) -> None:
    """Cancel fleet task ID (running commands are killed, pending nodes skipped)."""
    task = client_of(ctx).post(f"/api/tasks/{task_id}/cancel")
    click.echo(f"task {task.get('task_id', task_id)} {task.get('status')}")
