"""``corral template``: the manual's templates (named task groups), created, shown, listed and deleted."""

from __future__ import annotations

import json
from typing import Any

import click

from . import formatting
from .context import client_of, echo_json, echo_page, page_options, segment


@click.group()
def template() -> None:
    """Create, show, list and delete templates."""


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


@template.command("list")
@click.option("--name", help="Only templates whose name contains this.")
@page_options("templates")
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON.")
@click.pass_context
def template_list(ctx: click.Context, name: str | None, page: int, page_size: int, as_json: bool) -> None:
    """List templates with their task group and task counts and how many deployments use each."""
    answer = client_of(ctx).get("/api/templates", {"name": name, "page": page, "page_size": page_size})
    echo_page(answer, as_json, "templates", formatting.templates_table, ("template(s)", page, page_size))


@template.command("delete")
@click.argument("name")
@click.pass_context
def template_delete(ctx: click.Context, name: str) -> None:
    """Delete the template NAME (refused while deployments of it remain: `corral deployment delete ID`)."""
    client_of(ctx).delete(f"/api/templates/{segment(name)}")
    click.echo(f"template {name} deleted")
