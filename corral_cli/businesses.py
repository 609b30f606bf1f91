"""``corral business``: multi-component businesses (document 001), deployed, watched, updated, deleted."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import click

from shared.states import BusinessState, ComponentState

from . import formatting
from .client import ApiError, Client
from .context import EXIT_FAILED, CommandError, client_of, echo_json, page_options, segment
from .progress import Wait

POLL_SECONDS = 0.5
"""How often `--wait` looks at the business."""

SETTLED = frozenset({BusinessState.RUNNING, BusinessState.FAILED, BusinessState.STOPPED})
"""Business states `--wait` stops at."""


def read_body(file: Any) -> dict[str, Any]:
    """A business request from a JSON FILE (click.File), or a usage error naming the file."""
    try:
        body = json.loads(file.read())
    except ValueError as exc:
        raise click.UsageError(f"{file.name} is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise click.UsageError(f"{file.name} must hold one JSON object (a business)")
    return body


def components_table(components: Sequence[Mapping[str, Any]]) -> str:
    """One row per component: where it runs, its state and usage."""
    rows = []
    for c in components:
        usage = c.get("resource_usage") or {}
        cpu = usage.get("cpu_percent")
        mem = usage.get("memory_mb")
        rows.append(
            (
                c.get("component_id"),
                c.get("type"),
                c.get("hostname") or c.get("node_id"),
                c.get("status"),
                c.get("container_id") and str(c["container_id"])[:12] or c.get("pid"),
                None if cpu is None else f"{float(cpu):.1f}%",
                None if mem is None else f"{float(mem):.0f} MB",
                c.get("error_message"),
            )
        )
    return formatting.table(("COMPONENT", "TYPE", "NODE", "STATUS", "CONTAINER/PID", "CPU", "MEMORY", "ERROR"), rows)


def progress_text(business: Mapping[str, Any]) -> str:
    """`3/5 running, 1 starting` for the live line of `--wait`."""
    components = business.get("components") or []
    counts: dict[str, int] = {}
    for c in components:
        counts[str(c.get("status"))] = counts.get(str(c.get("status")), 0) + 1
    running = counts.pop(ComponentState.RUNNING.value, 0)
    rest = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
    return f"{business.get('status')}: {running}/{len(components)} running" + (f", {rest}" if rest else "")


class SettledWait(Wait[Mapping[str, Any]]):
    """`corral business ... --wait`: until the business settles; exit 0 when it reached ``want``."""

    poll_seconds = POLL_SECONDS

    def __init__(self, client: Client, business_id: str, want: BusinessState) -> None:
        super().__init__(client, f"/api/businesses/{business_id}")
        self.business_id = business_id
        self.want = want

    def line(self, seen: Mapping[str, Any]) -> str:
        return progress_text(seen)

    def over(self, seen: Mapping[str, Any]) -> bool:
        return seen.get("status") in SETTLED

    def report(self, seen: Mapping[str, Any]) -> int:
        click.echo(components_table(seen.get("components") or []))
        status = seen.get("status")
        if status != self.want:
            why = seen.get("message") or ""
            click.echo(f"business {self.business_id} is {status}: {why}".rstrip(": "), err=True)
            return EXIT_FAILED
        return 0

    def late(self, seen: Mapping[str, Any], timeout: float) -> str:
        return f"business {self.business_id} not settled after {timeout:g} s ({seen.get('status')})"


def wait_settled(client: Client, business_id: str, timeout: float, want: BusinessState) -> int:
    """Poll the business until it settles; 0 when it reached ``want``, 1 otherwise."""
    return SettledWait(client, business_id, want).run(timeout)


def print_refusal(answer: Mapping[str, Any]) -> None:
    """Why placement found no node for each component, one node per line."""
    for component_id, reasons in (answer.get("rejections") or {}).items():
        click.echo(f"{component_id}:", err=True)
        for reason in reasons:
            click.echo(f"  {reason}", err=True)


def already_exists(exc: ApiError, body: Mapping[str, Any]) -> str | None:
    """The business id when a deploy was refused because that business exists (a 409 that is no placement refusal)."""
    business_id = exc.body.get("business_id") or body.get("business_id")
    if exc.status == 409 and business_id and exc.message.startswith(f"Business {business_id} already exists"):
        return str(business_id)
    return None


@click.group()
def business() -> None:
    """Deploy and manage businesses: sets of process and Docker components, each placed on a node that fits it."""


_wait = click.option(
    "--wait", is_flag=True, help="Wait until the business settles; exit 1 unless it reached the state asked for."
)
_wait_timeout = click.option("--wait-timeout", default=300.0, show_default=True, help="Seconds --wait waits at most.")


@business.command("deploy")
@click.argument("file", type=click.File("rb"))
@click.option("--dry-run", is_flag=True, help="Only show where each component would go.")
@_wait
@_wait_timeout
@click.pass_context
def deploy(ctx: click.Context, file: Any, dry_run: bool, wait: bool, wait_timeout: float) -> None:
    """Deploy the business described in JSON FILE (`-` reads stdin); prints its id."""
    client = client_of(ctx)
    body = read_body(file)
    try:
        answer = client.post("/api/businesses", body, query={"dry_run": "true"} if dry_run else None)
    except ApiError as exc:
        existing = already_exists(exc, body)
        if existing:
            shown = "FILE" if str(file.name).startswith("<") else file.name  # `-` reads <stdin>
            raise CommandError(f"business {existing} already exists: use 'corral business update {shown}'") from None
        print_refusal(exc.body)
        raise
    if dry_run:
        rows = [(p.get("component_id"), p.get("hostname"), p.get("node_id")) for p in answer.get("plan") or []]
        click.echo(formatting.table(("COMPONENT", "NODE", "NODE ID"), rows))
        return
    business_id = answer["business_id"]
    click.echo(business_id)
    if wait:
        ctx.exit(wait_settled(client, business_id, wait_timeout, BusinessState.RUNNING))


@business.command("list")
@click.option("--status", type=click.Choice([s.value for s in BusinessState]), help="Only businesses in this state.")
@click.option("--name", help="Only businesses whose name contains this.")
@page_options("businesses")
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON.")
@click.pass_context
def list_(ctx: click.Context, status: str | None, name: str | None, page: int, page_size: int, as_json: bool) -> None:
    """List the businesses, newest first."""
    query = {"status": status, "name": name, "page": page, "page_size": page_size}
    answer = client_of(ctx).get("/api/businesses", query=query)
    if as_json:
        echo_json(answer)
        return
    items = answer.get("businesses", []) if isinstance(answer, dict) else answer
    rows = [(b.get("business_id"), b.get("business_name"), b.get("status"), b.get("updated_at")) for b in items]
    click.echo(formatting.table(("ID", "NAME", "STATUS", "UPDATED"), rows))
    if isinstance(answer, dict) and "total" in answer:
        click.echo(formatting.page_footer(answer, "business(es)", page, page_size))


@business.command("show")
@click.argument("business_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON.")
@click.pass_context
def show(ctx: click.Context, business_id: str, as_json: bool) -> None:
    """Show business ID with its components, where they run and what they use."""
    answer = client_of(ctx).get(f"/api/businesses/{business_id}")
    if as_json:
        echo_json(answer)
        return
    click.echo(f"{answer.get('business_id')}  {answer.get('business_name')}  {answer.get('status')}")
    if answer.get("message"):
        click.echo(answer["message"])
    click.echo()
    click.echo(components_table(answer.get("components") or []))


def _action_command(action: str, want: BusinessState, doc: str) -> click.Command:
    """`corral business stop|restart ID [--wait]`: POST /api/businesses/ID/<action>, then maybe wait."""

    @click.argument("business_id", metavar="ID")
    @_wait
    @_wait_timeout
    @click.pass_context
    def command(ctx: click.Context, business_id: str, wait: bool, wait_timeout: float) -> None:
        client = client_of(ctx)
        click.echo(client.post(f"/api/businesses/{business_id}/{action}").get("message", action))
        if wait:
            ctx.exit(wait_settled(client, business_id, wait_timeout, want))

    command.__doc__ = doc
    return business.command(action)(command)


stop = _action_command("stop", BusinessState.STOPPED, "Stop every component of business ID.")
restart = _action_command(
    "restart", BusinessState.RUNNING, "Restart every component of business ID (new processes and containers)."
)


@business.command("update")
@click.argument("args", nargs=-1, required=True, metavar="[ID] FILE")
@_wait
@_wait_timeout
@click.pass_context
def update(ctx: click.Context, args: Sequence[str], wait: bool, wait_timeout: float) -> None:
    """Update a business to the JSON FILE: only changed, added and removed components are touched.

    The business is the FILE's business_id, or ID when given. Prints the components changed, added,
    removed and left unchanged.
    """
    if len(args) > 2:
        raise click.UsageError("give FILE, or ID and FILE")
    file = click.File("rb").convert(args[-1], None, ctx)
    body = read_body(file)
    business_id = args[0] if len(args) == 2 else body.get("business_id")
    if not business_id:
        raise click.UsageError(f"{file.name} has no business_id: give the business ID before FILE")
    client = client_of(ctx)
    click.echo(formatting.update_summary(client.put(f"/api/businesses/{segment(str(business_id))}", body)))
    if wait:
        ctx.exit(wait_settled(client, str(business_id), wait_timeout, BusinessState.RUNNING))


@business.command("delete")
@click.argument("business_id", metavar="ID")
@click.pass_context
def delete(ctx: click.Context, business_id: str) -> None:
    """Delete stopped business ID and its history (refused unless stopped: `corral business stop ID --wait`)."""
    answer = client_of(ctx).delete(f"/api/businesses/{segment(business_id)}")
    click.echo(f"business {answer.get('business_id', business_id)} {answer.get('message', 'deleted')}")
