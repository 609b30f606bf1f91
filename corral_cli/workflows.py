"""``corral workflow``: fleet tasks run in the order their dependencies give (POST /api/workflows)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import click

from . import formatting
from .context import CommandError, client_of, echo_answer, echo_page, page_options

WAIT_SECONDS = 300
"""The most a ``--wait`` asks the manager to wait (the API's limit)."""

_json = click.option("--json", "as_json", is_flag=True, help="Print the API's JSON.")
_id = click.argument("workflow_id", metavar="ID")


def workflow_summary(workflow: Mapping[str, Any]) -> str:
    """A workflow's status and progress, then one row per step."""
    progress = workflow.get("progress") or {}
    head = f"workflow {workflow.get('name')} {workflow.get('id')}: {workflow.get('status')} ({progress.get('text')})"
    rows = [
        (
            s.get("name"),
            s.get("status"),
            ",".join(s.get("depends_on") or []),
            s.get("task_id"),
            f"{(s.get('hosts') or {}).get('succeeded', '-')}/{(s.get('hosts') or {}).get('total', '-')}",
            s.get("reason"),
        )
        for s in workflow.get("steps", [])
    ]
    return head + "\n" + formatting.table(["STEP", "STATUS", "DEPENDS ON", "TASK", "OK/HOSTS", "REASON"], rows)


def workflows_table(workflows: Sequence[Mapping[str, Any]]) -> str:
    """`corral workflow list`: one row per workflow."""
    rows = [
        (w.get("name"), w.get("id"), w.get("status"), (w.get("progress") or {}).get("text"), w.get("created_at"))
        for w in workflows
    ]
    return formatting.table(["NAME", "ID", "STATUS", "DONE", "CREATED"], rows)


@click.group()
def workflow() -> None:
    """Run, list, show and cancel workflows.

    A workflow is a JSON file {"name": ..., "steps": [...]}; each step has a name, depends_on (step
    names), on_failed_dependency ("stop" or "continue") and task: a fleet task body as POST /api/tasks
    takes. A target "succeeded_on:STEP" means the nodes where STEP succeeded.
    """


@workflow.command("run")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--wait", is_flag=True, help=f"Wait (up to {WAIT_SECONDS} s) for the workflow to end.")
@_json
@click.pass_context
def run(ctx: click.Context, file: Path, wait: bool, as_json: bool) -> None:
    """Start the workflow FILE describes; exits 1 when --wait sees it end otherwise than completed."""
    try:
        body = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CommandError(f"{file}: not a JSON workflow: {exc}") from exc
    query = {"wait": WAIT_SECONDS} if wait else None
    answer = client_of(ctx).post("/api/workflows", body, query, timeout=WAIT_SECONDS + 30 if wait else 30)
    echo_answer(answer, as_json, workflow_summary)
    if wait and answer.get("status") != "completed":
        ctx.exit(1)


@workflow.command("list")
@page_options("workflows")
@_json
@click.pass_context
def list_(ctx: click.Context, page: int, page_size: int, as_json: bool) -> None:
    """List workflows, newest first, with their progress."""
    answer = client_of(ctx).get("/api/workflows", {"page": page, "page_size": page_size})
    echo_page(answer, as_json, "workflows", workflows_table, ("workflow(s)", page, page_size))


@workflow.command("show")
@_id
@_json
@click.pass_context
def show(ctx: click.Context, workflow_id: str, as_json: bool) -> None:
    """Show workflow ID with every step's status and fleet task."""
    echo_answer(client_of(ctx).get(f"/api/workflows/{workflow_id}"), as_json, workflow_summary)


@workflow.command("cancel")
@_id
@_json
@click.pass_context
def cancel(ctx: click.Context, workflow_id: str, as_json: bool) -> None:
    """Cancel workflow ID: pending steps never start, running steps' tasks are canceled."""
    echo_answer(client_of(ctx).post(f"/api/workflows/{workflow_id}/cancel"), as_json, workflow_summary)
