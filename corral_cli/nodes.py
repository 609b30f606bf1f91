"""``corral node`` (``corral nodes`` is ``corral node list``): nodes by id or hostname, queries, their labels and
tags, forgetting one."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import click

from . import formatting
from .client import ApiError, Client
from .context import CommandError, alias_of, client_of, echo_answer, echo_json, segment

T = TypeVar("T")

REMOVE_SUFFIX = "-"
"""`key-` removes a label (as `kubectl label`)."""


def match_node(nodes: Sequence[Mapping[str, Any]], ref: str) -> str:
    """The id of the one node ``ref`` names, by id or else by hostname; an unknown or ambiguous one is an error."""
    if any(n.get("id") == ref for n in nodes):
        return ref
    hits = [n for n in nodes if n.get("hostname") == ref]
    if len(hits) == 1:
        return str(hits[0]["id"])
    if not hits:
        raise CommandError(f"no node has the id or hostname {ref!r}")
    rows = [(n.get("id"), n.get("status"), n.get("last_heartbeat")) for n in hits]
    candidates = formatting.table(("ID", "STATUS", "LAST HEARTBEAT"), rows)
    indented = "\n".join("  " + line for line in candidates.splitlines())
    raise CommandError(f"{len(hits)} nodes have the hostname {ref!r}; name one by its id:\n{indented}")


def on_node(client: Client, ref: str, action: Callable[[str], T]) -> T:
    """``action(node_id)`` with ``ref`` taken as an id first, then as a hostname when no node has that id."""
    try:
        return action(segment(ref))
    except ApiError as exc:
        if exc.status != 404:
            raise
    node_id = match_node(client.get("/api/nodes").get("nodes", []), ref)
    if node_id == ref:
        raise CommandError(f"node {ref} is gone")  # listed a moment ago, unknown again: forgotten meanwhile
    return action(node_id)


def node_call(ctx: click.Context, ref: str, method: str, suffix: str = "", body: Any = None) -> Any:
    """The API's answer to ``method`` on ``/api/nodes/<NODE><suffix>``, NODE found as in :func:`on_node`."""
    client = client_of(ctx)
    return on_node(client, ref, lambda node_id: client.call(method, f"/api/nodes/{node_id}{suffix}", body))


def parse_label_changes(items: Sequence[str], replace: bool) -> dict[str, str | None]:
    """``k=v`` sets, ``k-`` removes (a JSON merge patch's null); ``--replace`` takes only ``k=v``."""
    changes: dict[str, str | None] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if sep and key:
            changes[key] = value
        elif not sep and item.endswith(REMOVE_SUFFIX) and len(item) > 1 and not replace:
            changes[item[: -len(REMOVE_SUFFIX)]] = None
        else:
            wanted = "KEY=VALUE" if replace else "KEY=VALUE or KEY-"
            raise click.BadParameter(f"{item!r} is not {wanted}", param_hint="LABELS")
    return changes


@click.group()
def node() -> None:
    """List nodes, show one, set its labels, forget it or its secret.

    NODE is a node id or a hostname; a hostname that several nodes have (an old offline node and a new
    one, say) is refused with their ids.
    """


@node.command("list")
@click.option(
    "-q",
    "--query",
    metavar="QUERY",
    help="Only the nodes this node query selects, e.g. 'tags:web AND os.cpus:>2' (the language of GET "
    "/api/nodes?q= and of task targets query:...).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON.")
@click.pass_context
def node_list(ctx: click.Context, query: str | None, as_json: bool) -> None:
    """List the nodes with their status, resources and last heartbeat (also `corral nodes`).

    With -q, the nodes a query selects, with their tags: `corral nodes -q 'tags:appserver AND os.cpus:>8'`.
    """
    client = client_of(ctx)
    if query is None:
        echo_answer(client.get("/api/task/node"), as_json, lambda a: formatting.nodes_table(a.get("nodes", [])))
    else:
        answer = client.get("/api/nodes", {"q": query})
        echo_answer(answer, as_json, lambda a: formatting.node_documents_table(a.get("nodes", [])))


nodes = alias_of(node_list, "nodes", "corral node list")
"""``corral nodes``: the same command as ``corral node list``, kept as the short form."""

_node_arg = click.argument("ref", metavar="NODE")


@node.command("show")
@_node_arg
@click.pass_context
def node_show(ctx: click.Context, ref: str) -> None:
    """Show NODE: facts, labels, reservations and components, as JSON."""
    echo_json(node_call(ctx, ref, "GET"))


@node.command("forget-secret")
@_node_arg
@click.pass_context
def node_forget_secret(ctx: click.Context, ref: str) -> None:
    """Let the next join of NODE set a new node secret (its agent lost it)."""
    echo_json(node_call(ctx, ref, "POST", "/forget-secret"))


@node.command("forget")
@_node_arg
@click.pass_context
def node_forget(ctx: click.Context, ref: str) -> None:
    """Remove offline NODE from the fleet (refused while it is online)."""
    answer = node_call(ctx, ref, "DELETE")
    click.echo(f"node {answer.get('id')} ({answer.get('hostname')}) {answer.get('message', 'forgotten')}")


@node.command("label")
@_node_arg
@click.argument("labels", nargs=-1, metavar="KEY=VALUE... KEY-...")
@click.option("--replace", is_flag=True, help="Set exactly these API labels, dropping the others (none: clear them).")
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON (the node).")
@click.pass_context
def node_label(ctx: click.Context, ref: str, labels: Sequence[str], replace: bool, as_json: bool) -> None:
    """Add, change (KEY=VALUE) or remove (KEY-) API labels of NODE, then print its labels.

    API labels add to those the node's agent reports and win on the same key. With --replace, the
    API labels become exactly the KEY=VALUE given.
    """
    changes = parse_label_changes(labels, replace)
    if not changes and not replace:
        raise click.UsageError("give at least one KEY=VALUE or KEY- (or --replace to clear the API labels)")
    # PUT sets the API labels to exactly these; PATCH merges (null removes a key)
    answer = node_call(ctx, ref, "PUT" if replace else "PATCH", "/labels", {"labels": changes})
    echo_answer(answer, as_json, formatting.labels_table)


@node.command("tags")
@_node_arg
@click.argument("tags", nargs=-1, metavar="TAG...")
@click.option("--clear", is_flag=True, help="Set no tags at all (the agent's included).")
@click.option("--agent", "from_agent", is_flag=True, help="Hand the tags back to the node's agent (its --tag).")
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON (the node).")
@click.pass_context
def node_tags(ctx: click.Context, ref: str, tags: Sequence[str], clear: bool, from_agent: bool, as_json: bool) -> None:
    """Set the tags of NODE to exactly TAG..., then print them.

    Tags set here replace those the node's agent reports, across its restarts, until --agent hands them
    back. Node queries select by them: `corral nodes -q tags:appserver`.
    """
    if sum((bool(tags), clear, from_agent)) != 1:
        raise click.UsageError("give TAG..., or --clear, or --agent (one of them)")
    if from_agent:
        answer = node_call(ctx, ref, "DELETE", "/tags")
    else:
        answer = node_call(ctx, ref, "PUT", "/tags", {"tags": list(tags)})
    echo_answer(answer, as_json, formatting.tags_table)
