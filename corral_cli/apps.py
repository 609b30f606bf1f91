"""``corral app``: long-running apps (document 003 §5.2): created from a JSON file, scaled, rolled, followed."""

from __future__ import annotations

import http.client
import json
from collections.abc import Mapping, Sequence
from typing import Any

import click

from . import formatting
from .businesses import read_body
from .context import client_of, echo_answer, echo_json, page_options, segment
from .secret_options import secret_env_option
from .sse import parse_sse


def instances_table(instances: Sequence[Mapping[str, Any]]) -> str:
    """One row per instance: where it runs, its state, health, pid, ports and restarts."""
    rows = []
    for i in instances:
        ended = i.get("reason")  # how its last process ended, running again or not
        rows.append(
            (
                i.get("id"),
                i.get("version"),
                i.get("hostname") or i.get("node_id"),
                i.get("state") if i.get("desired") == "run" else f"{i.get('state')} (stopping)",
                i.get("health"),
                i.get("pid"),
                ",".join(str(p) for p in i.get("ports") or []) or None,
                i.get("restart_count"),
                ended,
            )
        )
    header = ("INSTANCE", "VERSION", "NODE", "STATE", "HEALTH", "PID", "PORTS", "RESTARTS", "LAST END")
    return formatting.table(header, rows)


def app_text(app: Mapping[str, Any]) -> str:
    """`corral app show`: a summary line, the progress, why it is short, then its instances."""
    counts = app.get("counts") or {}
    lines = [
        f"{app.get('name')}  {app.get('status')}  version {app.get('version')}  "
        f"{counts.get('running', 0)}/{counts.get('planned', 0)} running, {counts.get('healthy', 0)} healthy",
        f"query {app.get('definition', {}).get('nodeQuery')}  command {app.get('definition', {}).get('toProcess')}",
    ]
    if app.get("secretEnvs"):
        lines.append(f"secret env {', '.join(app['secretEnvs'])}")  # the names only: the API answers no value
    deployment = app.get("deployment") or {}
    if deployment.get("in_progress"):
        lines.append(
            f"rolling to version {deployment.get('version')}: {deployment.get('updated')}/{deployment.get('total')} "
            f"updated, {deployment.get('old')} old left"
        )
    shortfall = app.get("shortfall")
    if shortfall:
        lines.append(f"{shortfall.get('missing')} instance(s) cannot be placed:")
        lines += [f"  {reason}" for reason in shortfall.get("reasons") or []]
    lines.append("")
    lines.append(instances_table(app.get("instances") or []))
    return "\n".join(lines)


@click.group()
def app() -> None:
    """Run long-running apps: N supervised instances kept on the nodes a query selects."""


def _with_secrets(body: dict[str, Any], secret_env: Mapping[str, str]) -> dict[str, Any]:
    """``body`` with the ``--secret-env`` values added to its secretEnvs (an option wins over the file)."""
    if not secret_env:
        return body
    return {**body, "secretEnvs": {**(body.get("secretEnvs") or {}), **secret_env}}


@app.command("create")
@click.argument("file", type=click.File("rb"))
@secret_env_option
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON.")
@click.pass_context
def create(ctx: click.Context, file: Any, secret_env: dict[str, str], as_json: bool) -> None:
    """Create the app described in JSON FILE (`-` reads stdin) and place its instances."""
    echo_answer(client_of(ctx).post("/api/apps", _with_secrets(read_body(file), secret_env)), as_json, app_text)


@app.command("list")
@page_options("apps")
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON.")
@click.pass_context
def list_(ctx: click.Context, page: int, page_size: int, as_json: bool) -> None:
    """List the apps by name with their counts."""
    answer = client_of(ctx).get("/api/apps", query={"page": page, "page_size": page_size})
    if as_json:
        echo_json(answer)
        return
    rows = []
    for a in answer.get("apps", []):
        counts = a.get("counts") or {}
        rolling = "rolling" if (a.get("deployment") or {}).get("in_progress") else ""
        rows.append(
            (
                a.get("name"),
                a.get("status"),
                a.get("version"),
                f"{counts.get('running', 0)}/{counts.get('planned', 0)}",
                counts.get("healthy", 0),
                rolling or ("short" if a.get("shortfall") else ""),
            )
        )
    click.echo(formatting.table(("NAME", "STATUS", "VERSION", "RUNNING", "HEALTHY", "NOTE"), rows))
    click.echo(formatting.page_footer(answer, "app(s)", page, page_size))


@app.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON.")
@click.pass_context
def show(ctx: click.Context, name: str, as_json: bool) -> None:
    """Show app NAME: its progress, why it is short, and every instance."""
    echo_answer(client_of(ctx).get(f"/api/apps/{segment(name)}"), as_json, app_text)


@app.command("update")
@click.argument("file", type=click.File("rb"))
@secret_env_option
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON.")
@click.pass_context
def update(ctx: click.Context, file: Any, secret_env: dict[str, str], as_json: bool) -> None:
    """Change the app named in JSON FILE: its instances are replaced one at a time when what runs changed.

    Without secretEnvs in FILE nor --secret-env, the app keeps its secret env; with either, it gets exactly
    those."""
    body = _with_secrets(read_body(file), secret_env)
    if not isinstance(body.get("name"), str):
        raise click.UsageError(f"{file.name} has no name")
    echo_answer(client_of(ctx).put(f"/api/apps/{segment(body['name'])}", body), as_json, app_text)


@app.command("scale")
@click.argument("name")
@click.argument("instances", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON.")
@click.pass_context
def scale(ctx: click.Context, name: str, instances: int, as_json: bool) -> None:
    """Run INSTANCES instances of app NAME."""
    answer = client_of(ctx).post(f"/api/apps/{segment(name)}/scale", {"instances": instances})
    echo_answer(answer, as_json, app_text)


def _action_command(action: str, doc: str) -> click.Command:
    """`corral app restart|stop|start NAME`: POST /api/apps/NAME/<action>."""

    @click.argument("name")
    @click.option("--json", "as_json", is_flag=True, help="Print the API's JSON.")
    @click.pass_context
    def command(ctx: click.Context, name: str, as_json: bool) -> None:
        echo_answer(client_of(ctx).post(f"/api/apps/{segment(name)}/{action}"), as_json, app_text)

    command.__doc__ = doc
    return app.command(action)(command)


restart = _action_command("restart", "Replace every instance of app NAME, one at a time.")
stop = _action_command("stop", "Stop every instance of app NAME; its definition is kept.")
start = _action_command("start", "Run the instances of stopped app NAME again.")


@app.command("delete")
@click.argument("name")
@click.pass_context
def delete(ctx: click.Context, name: str) -> None:
    """Delete app NAME; its instances are stopped."""
    answer = client_of(ctx).delete(f"/api/apps/{segment(name)}")
    click.echo(
        f"app {answer.get('name', name)} deleted, {len(answer.get('stopped_instances') or [])} instance(s) stopped"
    )


@app.command("logs")
@click.argument("name")
@click.argument("instance", required=False)
@click.option("--stream", type=click.Choice(["stdout", "stderr"]), help="Only this stream (default: both).")
@click.option("--tail", default=100, show_default=True, help="Lines shown from the end.")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines as they come (Ctrl-C stops).")
@click.pass_context
def logs(ctx: click.Context, name: str, instance: str | None, stream: str | None, tail: int, follow: bool) -> None:
    """Print the output of an instance of app NAME (INSTANCE, or its first instance); stderr lines go to stderr."""
    client = client_of(ctx)
    if instance is None:
        instances = client.get(f"/api/apps/{segment(name)}").get("instances") or []
        if not instances:
            raise click.UsageError(f"app {name} has no instance")
        instance = str(instances[0]["id"])
    path = f"/api/apps/{segment(name)}/instances/{segment(instance)}/logs"
    query: dict[str, Any] = {"tail": tail, **({"stream": stream} if stream else {})}
    if not follow:
        for line in client.get(path, query=query).get("lines") or []:
            click.echo(line.get("line", ""), err=line.get("stream") == "stderr")
        return
    query["follow"] = 1
    params = "&".join(f"{key}={value}" for key, value in query.items())
    try:
        with client.stream(f"{path}?{params}") as response:
            for event in parse_sse(response):
                data = json.loads(event.data) if event.data else {}
                if event.event == "line":
                    click.echo(data.get("line", ""), err=data.get("stream") == "stderr")
                elif event.event == "end":
                    return
    except (OSError, http.client.HTTPException) as exc:
        raise click.ClickException(f"log stream lost: {exc}") from None
