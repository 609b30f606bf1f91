"""``corral``: one click group with the connection options, and the commands of the manual's API."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import click

from shared.states import TaskState

from . import formatting
from .businesses import business, node
from .client import ApiError, Client
from .config import CONFIG_ENV, TOKEN_ENV, URL_ENV, ConfigError
from .context import EXIT_API, EXIT_FAILED, client_of, echo_json
from .progress import ProgressLine
from .tasks import run, tasks

logger = logging.getLogger(__name__)

POLL_SECONDS = 0.3
"""How often `deploy --wait` looks at the deployment."""

DEPLOY_OK_STATES = frozenset({TaskState.RUNNING, TaskState.COMPLETED})
"""Deployment task states `deploy --wait` counts as up (a short command may already have completed)."""

DEPLOY_BAD_STATES = frozenset({TaskState.FAILED, TaskState.LOST, TaskState.STOPPING, TaskState.STOPPED})
"""Deployment task states that end `deploy --wait` with exit code 1."""


class CorralGroup(click.Group):
    """A click group that turns API errors into their message on stderr and exit code 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (ApiError, ConfigError) as exc:
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(EXIT_API)


@click.group(cls=CorralGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--manager-url",
    "url",
    envvar=URL_ENV,
    metavar="URL",
    help=f"Manager to talk to [env {URL_ENV}; config `url`; default http://127.0.0.1:8080].",
)
@click.option(
    "--token",
    envvar=TOKEN_ENV,
    metavar="TOKEN",
    show_envvar=False,
    help=f"API token [env {TOKEN_ENV}; config `token`].",
)
@click.option(
    "--config",
    "config",
    envvar=CONFIG_ENV,
    type=click.Path(dir_okay=False, path_type=Path),
    help=f"Config file [env {CONFIG_ENV}; default ~/.config/corral/config.toml].",
)
@click.option("-v", "--verbose", is_flag=True, help="Log each API call on stderr.")
@click.version_option(package_name="corral", prog_name="corral")
@click.pass_context
def cli(ctx: click.Context, url: str | None, token: str | None, config: Path | None, verbose: bool) -> None:
    """Talk to a corral manager: nodes, templates, deployments, fleet tasks and businesses."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, format="%(name)s: %(message)s")
    ctx.obj = {"url": url, "token": token, "config": config}


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON.")
@click.pass_context
def nodes(ctx: click.Context, as_json: bool) -> None:
    """List the nodes with their status, resources and last heartbeat."""
    answer = client_of(ctx).get("/api/task/node")
    if as_json:
        echo_json(answer)
        return
    click.echo(formatting.nodes_table(answer.get("nodes", [])))


@cli.group()
def template() -> None:
    """Create and show business templates."""


@template.command("create")
@click.argument("file", type=click.File("rb"))
@click.pass_context
def template_create(ctx: click.Context, file: Any) -> None:
    """Create a template from a JSON FILE (`-` reads stdin)."""
    try:
        body = json.loads(file.read())
    except ValueError as exc:
        raise click.UsageError(f"{file.name} is not valid JSON: {exc}") from None
    client_of(ctx).post("/api/task/task_group", body)
    name = body.get("name") if isinstance(body, dict) else None
    click.echo(f"template {name} created")


@template.command("show")
@click.argument("name")
@click.pass_context
def template_show(ctx: click.Context, name: str) -> None:
    """Show the template called NAME as JSON."""
    echo_json(client_of(ctx).post("/api/task/query", {"name": name}))


@cli.command()
@click.argument("name")
@click.option("--wait", is_flag=True, help="Wait until every task runs (exit 1 if one fails).")
@click.option("--wait-timeout", default=120.0, show_default=True, help="Seconds --wait waits at most.")
@click.pass_context
def deploy(ctx: click.Context, name: str, wait: bool, wait_timeout: float) -> None:
    """Deploy the template NAME; prints the deployment id."""
    client = client_of(ctx)
    dep_id = client.post("/api/task/task_group/deploy", {"name": name})["id"]
    click.echo(dep_id)
    if wait:
        ctx.exit(wait_for_deployment(client, dep_id, wait_timeout))


def wait_for_deployment(client: Client, dep_id: str, timeout: float) -> int:
    """Poll a deployment until all its tasks are up (0) or one failed or time ran out (1)."""
    progress = ProgressLine()
    deadline = time.monotonic() + timeout
    try:
        while True:
            dep = client.get(f"/deployments/{dep_id}")
            tasks = dep.get("tasks", [])
            progress.update(formatting.deployment_progress(tasks))
            states = {t.get("state") for t in tasks}
            if states & DEPLOY_BAD_STATES:
                progress.close()
                click.echo(formatting.deployment_tasks_table(tasks), err=True)
                click.echo(f"deployment {dep_id} did not come up: {dep.get('state')}", err=True)
                return EXIT_FAILED
            if tasks and states <= DEPLOY_OK_STATES:
                progress.close()
                return 0
            if time.monotonic() > deadline:
                progress.close()
                click.echo(f"deployment {dep_id} not up after {timeout:g} s ({dep.get('state')})", err=True)
                return EXIT_FAILED
            time.sleep(POLL_SECONDS)
    finally:
        progress.close()


@cli.command()
@click.argument("deployment_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON.")
@click.pass_context
def status(ctx: click.Context, deployment_id: str, as_json: bool) -> None:
    """Show the state of deployment ID."""
    answer = client_of(ctx).post("/api/task/task_group/query", {"id": deployment_id})
    if as_json:
        echo_json(answer)
        return
    click.echo(f"{answer.get('id')}  {answer.get('state')} (status {answer.get('status')})")


@cli.command()
@click.argument("deployment_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON.")
@click.pass_context
def deployment(ctx: click.Context, deployment_id: str, as_json: bool) -> None:
    """Show deployment ID with a table of its tasks."""
    dep = client_of(ctx).get(f"/deployments/{deployment_id}")
    if as_json:
        echo_json(dep)
        return
    click.echo(formatting.deployment_summary(dep))
    click.echo()
    click.echo(formatting.deployment_tasks_table(dep.get("tasks", [])))


@cli.command()
@click.argument("deployment_id", metavar="ID")
@click.pass_context
def stop(ctx: click.Context, deployment_id: str) -> None:
    """Stop every task of deployment ID."""
    answer = client_of(ctx).post("/api/task/task_group/stop", {"id": deployment_id})
    click.echo(f"stopping {answer.get('id', deployment_id)}")


cli.add_command(tasks)
cli.add_command(business)
cli.add_command(node)
cli.add_command(run)


def main() -> None:
    """Entry point for ``python -m corral_cli.main``."""
    cli(prog_name="corral")


if __name__ == "__main__":
    main()
