"""Who makes the current request and what its token lets it touch (issue 15): roles and an operator's scope.

The API's auth (api/auth.py) sets the identity before every request; services read it here and check an
operator's scope where they resolve nodes and commands, so a route that forgets cannot widen it. Outside a
request there is no identity, except that a schedule's firings run under the scope its creator's token had
(scope_of_current, identity_of_scope) and an app keeps its intersected query. The identity lives in a
ContextVar, not flask.g: services do not import Flask.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from contextvars import ContextVar
from dataclasses import dataclass

from redis import Redis

from manager_api.services.errors import NotPermitted
from manager_api.services.nodes import query as node_query
from manager_api.services.placement.model import Candidate

VIEWER = "viewer"
OPERATOR = "operator"
ADMIN = "admin"
ROLES = (VIEWER, OPERATOR, ADMIN)
"""Each role may do what the ones before it may."""

SHELL_SPECIALS = ";&|`$<>()\n\r\\"
"""What a ``*`` or ``?`` of an allowlist pattern never stands for: ``systemctl status *`` must not admit
``systemctl status x; rm -rf /`` (the lesson of Salt's CVE-2020-11651: a limit the caller can step around is
none). Written literally in a pattern, these characters still match themselves."""

_WILD = f"[^{re.escape(SHELL_SPECIALS)}]"


@dataclass(frozen=True)
class Identity:
    """The caller: a named token's name, role and scope, or the bootstrap token (admin, no scope)."""

    name: str
    role: str
    token_id: str | None = None
    node_query: str | None = None
    commands: tuple[str, ...] | None = None
    rate_limit: str | None = None
    """Its own API rate (api/rate_limits.py); None: the manager's --rate-limit."""

    def has(self, role: str) -> bool:
        """Whether this identity's role includes ``role``."""
        return ROLES.index(self.role) >= ROLES.index(role)

    @property
    def scoped(self) -> bool:
        return self.role != ADMIN and (self.node_query is not None or self.commands is not None)


_current: ContextVar[Identity | None] = ContextVar("corral_identity", default=None)


def use(identity: Identity | None) -> None:
    """Make ``identity`` the current request's (None: no token, the open API, or no request at all)."""
    _current.set(identity)


def current() -> Identity | None:
    return _current.get()


def scope_of_current() -> str:
    """The current token's scope as JSON, kept with what acts later on its behalf (a schedule's firings); ""
    when it has none (an admin, the bootstrap token, an open API)."""
    identity = current()
    if identity is None or not identity.scoped:
        return ""
    fields = {"name": identity.name, "role": identity.role, "token_id": identity.token_id}
    commands = None if identity.commands is None else list(identity.commands)
    return json.dumps({**fields, "node_query": identity.node_query, "commands": commands})


def identity_of_scope(stored: str) -> Identity | None:
    """The identity ``scope_of_current`` kept (None for ""): its scope as it was when it was kept."""
    if not stored:
        return None
    data = json.loads(stored)
    commands = None if data["commands"] is None else tuple(data["commands"])
    return Identity(data["name"], data["role"], data["token_id"], data["node_query"], commands)


def pattern_matches(pattern: str, command: str) -> bool:
    """Whether ``command`` matches the glob ``pattern`` whole (``*`` any run, ``?`` one character, neither
    standing for a shell special character)."""
    parts = [_WILD + "*" if c == "*" else _WILD if c == "?" else re.escape(c) for c in pattern]
    return re.fullmatch("".join(parts), command.strip()) is not None


def check_command(command: str, env: dict[str, str] | None = None) -> None:
    """NotPermitted unless the current token's allowlist (if any) admits ``command``.

    A token with an allowlist sets no environment: PATH or LD_PRELOAD would change what an allowed command runs.
    """
    identity = current()
    if identity is None or identity.role == ADMIN or identity.commands is None:
        return
    if not any(pattern_matches(pattern, command) for pattern in identity.commands):
        raise NotPermitted(f"Token {identity.name!r} may not run command {command.strip()!r}: not in its allowlist")
    if env:
        raise NotPermitted(f"Token {identity.name!r} has a command allowlist: it may not set env ({sorted(env)})")


def allowed_nodes(redis: Redis, offline_after_intervals: int) -> frozenset[str] | None:
    """The ids of the nodes the current token's node query selects now; None: no node limit."""
    identity = current()
    if identity is None or identity.role == ADMIN or identity.node_query is None:
        return None
    # Imported here: placement.candidates imports this module, and the node documents import placement's.
    from manager_api.services.nodes import documents

    parsed = node_query.parse(identity.node_query, parameter="nodeQuery")
    return documents.matching_ids(redis, offline_after_intervals, parsed)


def check_nodes(redis: Redis, offline_after_intervals: int, node_ids: Iterable[str | None], what: str) -> None:
    """NotPermitted naming the nodes of ``node_ids`` outside the current token's node query (``what`` is
    what would touch them, for the message)."""
    allowed = allowed_nodes(redis, offline_after_intervals)
    if allowed is None:
        return
    outside = sorted({node for node in node_ids if node and node not in allowed})
    if outside:
        identity = current()
        name = identity.name if identity else "?"
        raise NotPermitted(
            f"Token {name!r} may not reach nodes {', '.join(outside)} ({what}): outside its node query",
            {"nodes": outside},
        )


def node_query_text() -> str | None:
    """The current operator token's node query, for placement to AND with an app's own."""
    identity = current()
    if identity is None or identity.role == ADMIN:
        return None
    return identity.node_query


def within_scope(redis: Redis, offline_after_intervals: int, nodes: list[Candidate]) -> list[Candidate]:
    """``nodes`` less those outside the current token's node query: placement's candidates (deployments,
    businesses, apps) never leave an operator's nodes."""
    allowed = allowed_nodes(redis, offline_after_intervals)
    return nodes if allowed is None else [node for node in nodes if node.node_id in allowed]


def check_process(command: str, args: Iterable[str] = (), env: dict[str, str] | None = None) -> None:
    """check_command on a process given as a command and its arguments (an app, a business component)."""
    check_command(" ".join([command, *args]), env)


def check_no_image(kind: str, what: str) -> None:
    """A token with a command allowlist runs no container image: an image runs whatever it holds."""
    identity = current()
    if identity is not None and identity.role != ADMIN and identity.commands is not None and kind != "process":
        raise NotPermitted(f"Token {identity.name!r} has a command allowlist: it may not run {what} ({kind})")


def scoped_node_query(app_query: str) -> str:
    """An app's nodeQuery narrowed to the current token's nodes (stored so, later placements keep it):
    ``(<app's>) AND (<token's>)``; unchanged when already narrowed (a definition posted back as GET shows it)."""
    token_query = node_query_text()
    if token_query is None:
        return app_query
    suffix = f" AND ({token_query})"
    return app_query if app_query.endswith(suffix) else f"({app_query}){suffix}"


def check_app_query(name: str, app_query: str) -> None:
    """NotPermitted unless an app's stored nodeQuery keeps it on the current token's nodes."""
    token_query = node_query_text()
    if token_query is not None and not app_query.endswith(f" AND ({token_query})"):
        identity = current()
        raise NotPermitted(
            f"Token {identity.name if identity else '?'!r} may not change app {name}: "
            f"its nodeQuery {app_query!r} reaches beyond the token's"
        )
