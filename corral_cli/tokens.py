"""``corral token``: named API tokens with a role (issue 15): create (the secret printed once), list, show, revoke."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import click

from . import formatting
from .context import client_of, echo_answer, echo_page, page_options, segment

ROLES = ("viewer", "operator", "admin")

_json = click.option("--json", "as_json", is_flag=True, help="Print the API's JSON.")


def token_summary(token: Mapping[str, Any]) -> str:
    """A token's fields, one a line; its secret first when the answer carries it (creation only)."""
    lines = []
    if token.get("token"):
        lines += [f"token: {token['token']}", "(shown once: the manager keeps only a hash of it)", ""]
    commands = token.get("commands")
    lines += [
        f"{token.get('name')}  {token.get('id')}  {token.get('role')}  {token.get('state')}",
        f"node query: {formatting.cell(token.get('nodeQuery') or 'any node')}",
        f"commands:   {', '.join(commands) if commands else 'any command'}",
        f"created:    {formatting.cell(token.get('createdAt'))} by {formatting.cell(token.get('createdBy'))}",
        f"expires:    {formatting.cell(token.get('expiresAt') or 'never')}",
        f"last used:  {formatting.cell(token.get('lastUsedAt') or 'never')}",
        f"rate limit: {formatting.cell(token.get('rateLimit') or 'the manager default')}",
    ]
    if token.get("revokedAt"):
        lines.append(f"revoked:    {formatting.cell(token['revokedAt'])}")
    return "\n".join(lines)


def tokens_table(tokens: Sequence[Mapping[str, Any]]) -> str:
    rows = [
        [
            t.get("id"),
            t.get("name"),
            t.get("role"),
            t.get("state"),
            t.get("nodeQuery") or "-",
            t.get("expiresAt") or "-",
        ]
        for t in tokens
    ]
    return formatting.table(["ID", "NAME", "ROLE", "STATE", "NODE QUERY", "EXPIRES"], rows)


@click.group()
def token() -> None:
    """Create, list, show and revoke named API tokens (admin only).

    A token has a role: viewer (reads), operator (deploys, runs commands, manages apps: only on the nodes of
    its --node-query and, given --command, only commands matching those patterns) or admin (everything).
    """


@token.command("create")
@click.argument("name")
@click.option("--role", type=click.Choice(ROLES), required=True, help="What the token may do.")
@click.option("--node-query", metavar="QUERY", help="Operator: only the nodes this node query selects.")
@click.option(
    "--command",
    "commands",
    multiple=True,
    metavar="PATTERN",
    help="Operator: only commands matching this glob (repeat for more); * never matches ; & | $ ` < > ( ).",
)
@click.option("--expires", metavar="DURATION", help="Lifetime: 30d, 12h, 90m or 45s (default: never).")
@click.option("--rate-limit", metavar="RATE", help="Its own API rate, e.g. 50/second (default: the manager's).")
@_json
@click.pass_context
def create(
    ctx: click.Context,
    name: str,
    role: str,
    node_query: str | None,
    commands: tuple[str, ...],
    expires: str | None,
    rate_limit: str | None,
    as_json: bool,
) -> None:
    """Create token NAME and print its secret, once."""
    body: dict[str, Any] = {"name": name, "role": role}
    if node_query is not None:
        body["nodeQuery"] = node_query
    if commands:
        body["commands"] = list(commands)
    if expires is not None:
        body["expiresIn"] = expires
    if rate_limit is not None:
        body["rateLimit"] = rate_limit
    echo_answer(client_of(ctx).post("/api/tokens", body), as_json, token_summary)


@token.command("list")
@page_options("tokens")
@_json
@click.pass_context
def list_(ctx: click.Context, page: int, page_size: int, as_json: bool) -> None:
    """List tokens, oldest first, revoked and expired ones too (never their secrets)."""
    answer = client_of(ctx).get("/api/tokens", {"page": page, "page_size": page_size})
    echo_page(answer, as_json, "tokens", tokens_table, ("token(s)", page, page_size))


@token.command("show")
@click.argument("token_id", metavar="ID")
@_json
@click.pass_context
def show(ctx: click.Context, token_id: str, as_json: bool) -> None:
    """Show token ID (not its secret)."""
    echo_answer(client_of(ctx).get(f"/api/tokens/{segment(token_id)}"), as_json, token_summary)


@token.command("revoke")
@click.argument("token_id", metavar="ID")
@_json
@click.pass_context
def revoke(ctx: click.Context, token_id: str, as_json: bool) -> None:
    """Revoke token ID at once (its row stays, for the audit log)."""
    echo_answer(client_of(ctx).delete(f"/api/tokens/{segment(token_id)}"), as_json, token_summary)
