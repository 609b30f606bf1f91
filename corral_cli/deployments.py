"""``corral deploy|status|stop`` and ``corral deployment``: the manual's deployments of a template."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import click

from shared.states import DeploymentState, TaskState

from . import formatting
from .client import Client
from .context import EXIT_FAILED, client_of, echo_answer, echo_page, page_options, segment
from .progress import Wait

POLL_SECONDS = 0.3
"""How often `deploy --wait` looks at the deployment."""

DEPLOY_OK_STATES = frozenset({TaskState.RUNNING, TaskState.COMPLETED})
"""Deployment task states `deploy --wait` counts as up (a short command may already have completed)."""

DEPLOY_BAD_STATES = frozenset({TaskState.FAILED, TaskState.LOST, TaskState.STOPPING, TaskState.STOPPED})
"""Deployment task states that end `deploy --wait` with exit code 1."""

_json = click.option("--json", "as_json", is_flag=True, help="Print the API's JSON.")


@click.command()
@click.argument("name")
@click.option("--wait", is_flag=True, help="Wait until every deployment task runs (exit 1 if one fails).")
@click.option("--wait-timeout", default=120.0, show_default=True, help="Seconds --wait waits at most.")
@click.pass_context
def deploy(ctx: click.Context, name: str, wait: bool, wait_timeout: float) -> None:
    """Deploy the template NAME; prints the deployment id."""
    client = client_of(ctx)
    dep_id = client.post("/api/task/task_group/deploy", {"name": name})["id"]
    click.echo(dep_id)
    if wait:
        ctx.exit(wait_for_deployment(client, dep_id, wait_timeout))


def task_states(dep: Mapping[str, Any]) -> set[Any]:
    """The states a deployment's deployment tasks are in."""
    return {t.get("state") for t in dep.get("tasks", [])}


class UpWait(Wait[Mapping[str, Any]]):
    """`corral deploy --wait`: until every deployment task is up (exit 0) or one failed (exit 1)."""

    poll_seconds = POLL_SECONDS

    def __init__(self, client: Client, dep_id: str) -> None:
        super().__init__(client, f"/deployments/{dep_id}")
        self.dep_id = dep_id

    def line(self, seen: Mapping[str, Any]) -> str:
        return formatting.deployment_progress(seen.get("tasks", []))

    def over(self, seen: Mapping[str, Any]) -> bool:
        states = task_states(seen)
        return bool(states & DEPLOY_BAD_STATES) or bool(seen.get("tasks", [])) and states <= DEPLOY_OK_STATES

    def report(self, seen: Mapping[str, Any]) -> int:
        if not task_states(seen) & DEPLOY_BAD_STATES:
            return 0
        click.echo(formatting.deployment_tasks_table(seen.get("tasks", [])), err=True)
        click.echo(f"deployment {self.dep_id} did not come up: {seen.get('state')}", err=True)
        return EXIT_FAILED

    def late(self, seen: Mapping[str, Any], timeout: float) -> str:
        return f"deployment {self.dep_id} not up after {timeout:g} s ({seen.get('state')})"


def wait_for_deployment(client: Client, dep_id: str, timeout: float) -> int:
    """Poll a deployment until all its deployment tasks are up (0) or one failed or time ran out (1)."""
    return UpWait(client, dep_id).run(timeout)


@click.command()
@click.argument("deployment_id", metavar="ID")
@_json
@click.pass_context
def status(ctx: click.Context, deployment_id: str, as_json: bool) -> None:
    """Show the state of deployment ID."""
    answer = client_of(ctx).post("/api/task/task_group/query", {"id": deployment_id})
    echo_answer(answer, as_json, lambda a: f"{a.get('id')}  {a.get('state')} (status {a.get('status')})")


@click.command()
@click.argument("deployment_id", metavar="ID")
@click.pass_context
def stop(ctx: click.Context, deployment_id: str) -> None:
    """Stop every deployment task of deployment ID."""
    answer = client_of(ctx).post("/api/task/task_group/stop", {"id": deployment_id})
    click.echo(f"stopping {answer.get('id', deployment_id)}")


class ShowByDefaultGroup(click.Group):
    """A group whose first argument, when it names none of its commands, is an ID for `show`.

    So `corral deployment ID [--json]` keeps meaning `corral deployment show ID [--json]`.
    """

    default_command = "show"

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ctx.help_option_names:
            args = [self.default_command, *args]
        return super().parse_args(ctx, args)


@click.group(cls=ShowByDefaultGroup, subcommand_metavar="ID | COMMAND [ARGS]...")
def deployment() -> None:
    """List, show and delete deployments; `corral deployment ID` is `corral deployment show ID`."""


@deployment.command("show")
@click.argument("deployment_id", metavar="ID")
@_json
@click.pass_context
def deployment_show(ctx: click.Context, deployment_id: str, as_json: bool) -> None:
    """Show deployment ID with a table of its deployment tasks."""
    dep = client_of(ctx).get(f"/deployments/{segment(deployment_id)}")
    echo_answer(
        dep,
        as_json,
        lambda d: f"{formatting.deployment_summary(d)}\n\n{formatting.deployment_tasks_table(d.get('tasks', []))}",
    )


@deployment.command("list")
@click.option(
    "--state",
    type=click.Choice([s.value for s in DeploymentState], case_sensitive=False),
    help="Only deployments in this state.",
)
@click.option("--name", help="Only deployments of templates whose name contains this.")
@page_options("deployments")
@_json
@click.pass_context
def deployment_list(
    ctx: click.Context, state: str | None, name: str | None, page: int, page_size: int, as_json: bool
) -> None:
    """List deployments, newest first, with their deployment tasks counted by state."""
    query = {"state": state, "name": name, "page": page, "page_size": page_size}
    answer = client_of(ctx).get("/api/deployments", query)
    echo_page(answer, as_json, "deployments", formatting.deployments_table, ("deployment(s)", page, page_size))


@deployment.command("delete")
@click.argument("deployment_id", metavar="ID")
@click.pass_context
def deployment_delete(ctx: click.Context, deployment_id: str) -> None:
    """Delete ended deployment ID and its deployment task history (refused until it has ended: `corral stop ID`)."""
    client_of(ctx).delete(f"/api/deployments/{segment(deployment_id)}")
    click.echo(f"deployment {deployment_id} deleted")
