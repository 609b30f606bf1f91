"""``corral workflow``: fleet tasks run in the order their dependencies give (POST /api/workflows)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import click

from . import formatting
from .client import Client
from .context import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    CommandError,
    client_of,
    echo_answer,
    echo_json,
    echo_page,
    page_options,
)
from .progress import Wait

WAIT_TIMEOUT = 3600.0
"""How long ``run --wait`` follows a workflow by default (it goes on on the manager after that)."""
POLL_SECONDS = 1.0
"""How often ``run --wait`` looks at the workflow."""
RUNNING_SHOWN = 4
"""Running steps named on the progress line (then "+N")."""

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


def progress_text(workflow: Mapping[str, Any]) -> str:
    """`running 3/10 steps: build, test-a +2` for the live line of ``run --wait``."""
    progress = workflow.get("progress") or {}
    running = [str(s.get("name")) for s in workflow.get("steps", []) if s.get("status") == "running"]
    names = ", ".join(running[:RUNNING_SHOWN]) + (
        f" +{len(running) - RUNNING_SHOWN}" if len(running) > RUNNING_SHOWN else ""
    )
    text = f"workflow {workflow.get('name')}: {workflow.get('status')} {progress.get('text')} steps"
    return f"{text}: {names}" if names else text


class FinishedWait(Wait[Mapping[str, Any]]):
    """`corral workflow run --wait`: until the workflow ended; exit 0 when it completed."""

    poll_seconds = POLL_SECONDS

    def __init__(self, client: Client, workflow_id: str, as_json: bool) -> None:
        super().__init__(client, f"/api/workflows/{workflow_id}")
        self.workflow_id = workflow_id
        self.as_json = as_json

    def line(self, seen: Mapping[str, Any]) -> str:
        return progress_text(seen)

    def over(self, seen: Mapping[str, Any]) -> bool:
        return seen.get("finished_at") is not None

    def report(self, seen: Mapping[str, Any]) -> int:
        if self.as_json:
            echo_json(seen)
        else:
            click.echo(workflow_summary(seen))
        return 0 if seen.get("status") == "completed" else EXIT_FAILED

    def late(self, seen: Mapping[str, Any], timeout: float) -> str:
        progress = (seen.get("progress") or {}).get("text")
        return (
            f"workflow {self.workflow_id} not over after {timeout:g} s ({seen.get('status')} {progress}); it goes on: "
            f"corral workflow show {self.workflow_id}"
        )


@click.group()
def workflow() -> None:
    """Run, list, show and cancel workflows.

    A workflow is a JSON file {"name": ..., "steps": [...]}; each step has a name, depends_on (step
    names), on_failed_dependency ("stop" or "continue") and task: a fleet task body as POST /api/tasks
    takes. A target "succeeded_on:STEP" means the nodes where STEP succeeded.
    """


@workflow.command("run")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--wait", is_flag=True, help="Follow the workflow (a progress line on stderr) until it ends.")
@click.option(
    "--wait-timeout", default=WAIT_TIMEOUT, show_default=True, help="Seconds --wait follows it at most (it goes on)."
)
@_json
@click.pass_context
def run(ctx: click.Context, file: Path, wait: bool, wait_timeout: float, as_json: bool) -> None:
    """Start the workflow FILE describes. With --wait, follow it until it ends and exit 1 unless it completed;
    Ctrl-C stops following (exit 130) and leaves the workflow running (`corral workflow cancel ID` stops it)."""
    try:
        body = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CommandError(f"{file}: not a JSON workflow: {exc}") from exc
    client = client_of(ctx)
    answer = client.post("/api/workflows", body)
    if not wait:
        echo_answer(answer, as_json, workflow_summary)
        return
    workflow_id = str(answer.get("id"))
    click.echo(f"workflow {answer.get('name')} {workflow_id}: {len(answer.get('steps') or [])} steps", err=True)
    try:
        ctx.exit(FinishedWait(client, workflow_id, as_json).run(wait_timeout))
    except KeyboardInterrupt:
        click.echo(
            f"\ninterrupted: workflow {workflow_id} goes on (corral workflow cancel {workflow_id} stops it)", err=True
        )
        ctx.exit(EXIT_INTERRUPTED)


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
