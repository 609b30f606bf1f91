"""``corral schedule``: fleet tasks fired by a crontab line (UTC) or every N seconds."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import click

from . import formatting
from .client import Client
from .context import CommandError, client_of, echo_answer, echo_page, page_options
from .scripts import typed_params
from .tasks import fleet_body, fleet_command_options


def match_schedule(schedules: Sequence[Mapping[str, Any]], ref: str) -> Mapping[str, Any]:
    """The schedule whose id, else whose name (names are unique), is ``ref``."""
    for key in ("id", "name"):
        for schedule in schedules:
            if schedule.get(key) == ref:
                return schedule
    raise CommandError(f"no schedule has the id or name {ref!r}")


LOOKUP_PAGE_SIZE = 1000
"""Schedules asked for per call when looking one up by name (the most the API answers at once)."""


def all_schedules(client: Client) -> list[Mapping[str, Any]]:
    """Every schedule, page after page (a manager from before schedule paging answers them all at once)."""
    schedules: list[Mapping[str, Any]] = []
    page = 1
    while True:
        answer = client.get("/api/schedules", {"page": page, "page_size": LOOKUP_PAGE_SIZE})
        batch = answer.get("schedules", [])
        schedules += batch
        if not batch or "total" not in answer or len(schedules) >= int(answer["total"]):
            return schedules
        page += 1


def find_schedule(client: Client, ref: str) -> Mapping[str, Any]:
    """The schedule ``ref`` names, by id or name."""
    return match_schedule(all_schedules(client), ref)


def schedule_call(ctx: click.Context, ref: str, method: str, suffix: str = "") -> Any:
    """The API's answer to ``method`` on ``/api/schedules/<ID><suffix>``, the schedule found by id or name."""
    client = client_of(ctx)
    return client.call(method, f"/api/schedules/{find_schedule(client, ref)['id']}{suffix}")


def pause_state(schedule: Mapping[str, Any]) -> str:
    """`schedule NAME paused`, or active with its next run: what `pause` and `resume` print."""
    state = "paused" if schedule.get("paused") else f"active, next run {formatting.cell(schedule.get('next_run_at'))}"
    return f"schedule {schedule.get('name')} {state}"


_json = click.option("--json", "as_json", is_flag=True, help="Print the API's JSON.")
_ref = click.argument("ref", metavar="SCHEDULE")


@click.group()
def schedule() -> None:
    """Create, list, show, pause, resume and delete schedules.

    A schedule runs a command (or a registered script) on its target nodes by cron (UTC) or every N seconds;
    each firing is an ordinary fleet task created by `schedule:<name>` (see `corral tasks list`). SCHEDULE is a
    schedule's id or its name.
    """


@schedule.command("create")
@click.argument("name")
@click.option("--command", "command", metavar="CMD", help="Shell command run on each target node.")
@click.option("--script", metavar="NAME@VERSION", help="A registered script to run instead of --command.")
@click.option("--param", "values", multiple=True, metavar="NAME=VALUE", help="The script's parameter (repeat).")
@fleet_command_options(
    on_help="Node ids, hostnames, IPs, key=value labels, `all`, or query:QUERY (as `corral run --on`).",
    timeout_help="Seconds before each firing's command is killed on a node.",
)
@click.option("--cron", metavar="'EXPR'", help="Standard crontab line, in UTC: '0 3 * * 1-5'.")
@click.option("--every", type=click.IntRange(min=1), metavar="SECONDS", help="Fire every SECONDS seconds instead.")
@click.option("--description", default="", help="Free text kept with the schedule.")
@click.option(
    "--on-agent",
    is_flag=True,
    help="Fired by each target node's agent from its own clock, even while the manager is unreachable.",
)
@_json
@click.pass_context
def create(
    ctx: click.Context,
    name: str,
    command: str | None,
    script: str | None,
    values: Sequence[str],
    on: Sequence[str],
    cron: str | None,
    every: int | None,
    timeout: int,
    env: dict[str, str],
    secret_env: dict[str, str],
    description: str,
    on_agent: bool,
    as_json: bool,
) -> None:
    """Create schedule NAME: a fleet task running CMD (or script NAME@VERSION with its --param values) on the
    targets, fired by --cron or --every."""
    if (cron is None) == (every is None):
        raise click.UsageError("give either --cron 'EXPR' or --every SECONDS")
    if (command is None) == (script is None):
        raise click.UsageError("give either --command CMD or --script NAME@VERSION")
    if values and script is None:
        raise click.UsageError("--param goes with --script NAME@VERSION")
    trigger = {"cron": cron} if cron is not None else {"interval": every}
    body = fleet_body(name, command or "", on, timeout, env, secret_env, description=description, **trigger)
    if script is not None:
        del body["command"]
        body.update(script=script, params=typed_params(client_of(ctx), script, values, "--script"))
    if on_agent:
        body["on_agent"] = True
    echo_answer(client_of(ctx).post("/api/schedules", body), as_json, formatting.schedule_summary)


@schedule.command("list")
@page_options("schedules")
@_json
@click.pass_context
def list_(ctx: click.Context, page: int, page_size: int, as_json: bool) -> None:
    """List schedules, oldest first, with their trigger, next and last run."""
    answer = client_of(ctx).get("/api/schedules", {"page": page, "page_size": page_size})
    footer = ("schedule(s)", page, page_size)
    echo_page(answer, as_json, "schedules", formatting.schedules_table, footer, paged_later=True)


@schedule.command("show")
@_ref
@_json
@click.pass_context
def show(ctx: click.Context, ref: str, as_json: bool) -> None:
    """Show SCHEDULE with the ids of the fleet tasks it fired last."""
    echo_answer(schedule_call(ctx, ref, "GET"), as_json, formatting.schedule_summary)


def _pause_command(action: str, doc: str) -> click.Command:
    """`corral schedule pause|resume SCHEDULE`: POST /api/schedules/ID/<action>."""

    @_ref
    @_json
    @click.pass_context
    def command(ctx: click.Context, ref: str, as_json: bool) -> None:
        echo_answer(schedule_call(ctx, ref, "POST", f"/{action}"), as_json, pause_state)

    command.__doc__ = doc
    return schedule.command(action)(command)


pause = _pause_command("pause", "Stop firing SCHEDULE until it is resumed.")
resume = _pause_command("resume", "Fire SCHEDULE again from its next tick on.")


@schedule.command("delete")
@_ref
@click.pass_context
def delete(ctx: click.Context, ref: str) -> None:
    """Delete SCHEDULE; the fleet tasks it fired stay."""
    client = client_of(ctx)
    found = find_schedule(client, ref)
    client.delete(f"/api/schedules/{found['id']}")
    click.echo(f"schedule {found.get('name')} deleted")
