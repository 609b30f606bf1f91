"""Agents joining: upsert their node and tell them where their queue is."""

from __future__ import annotations

import hmac
import json
import logging
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from redis import Redis
from redis.exceptions import ResponseError

from manager_api import db
from manager_api.config import Settings
from manager_api.models import Node, utcnow
from manager_api.services import audit, job_keys
from manager_api.services.errors import Invalid, NotPermitted, Unavailable
from manager_api.services.nodes import labels as node_labels
from manager_api.services.nodes import redis_users
from manager_api.services.schedules import agent_sets
from shared import job_signing, keys
from shared.defaults import PROTOCOL_VERSION

logger = logging.getLogger(__name__)


def _host_only(request_host: str) -> str:
    """The host part of a Host header (``[::1]:8080`` → ``[::1]``, ``a:8080`` → ``a``)."""
    if request_host.startswith("["):
        return request_host[: request_host.index("]") + 1]
    return request_host.rsplit(":", 1)[0] if request_host.count(":") == 1 else request_host


def agent_redis_url(settings: Settings, request_host: str, auth: str | None) -> str:
    """The Redis URL to hand an agent that reached the manager as ``request_host``, logging in as ``auth``
    (``user:password`` of its node's own user, node_redis_auth), or as the manager itself when None."""
    if settings.agent_redis_url:
        return settings.agent_redis_url
    if not settings.redis_url:
        raise Unavailable("The manager has no Redis configured")
    parts = urlsplit(settings.redis_url)
    own_auth, _, host = parts.netloc.rpartition("@")
    if settings.private_redis:
        # The private Redis listens beside the API: the agent reaches it under the name it used for us.
        host = f"{_host_only(request_host)}:{parts.port}"
    auth = own_auth if auth is None else auth
    return urlunsplit((parts.scheme, f"{auth}@{host}" if auth else host, parts.path, parts.query, parts.fragment))


_acl_refused = False
"""Set once the external Redis refused to let the manager make node users: warned about once per process."""


def node_redis_auth(settings: Settings, redis: Redis, node_id: str) -> str | None:
    """Make ``node_id``'s own Redis user and return its ``user:password``; None when the agents log in as the
    manager does (an external Redis on which the manager may not manage users: README, Security). With
    --agent-redis-url the operator manages the agents' credentials, and nothing is made."""
    global _acl_refused
    if settings.agent_redis_url or _acl_refused:
        return None
    try:
        redis_users.create(redis, [node_id])
    except ResponseError as exc:
        if settings.private_redis:
            # Never the manager's own password to agents: a join fails (503) rather than hand it out.
            logger.error("node %s: its Redis user could not be made (Redis 7 or later is needed): %s", node_id, exc)
            raise
        # NOPERM (an external Redis whose user may not manage users), or a Redis older than 7.0 (no key
        # selectors): the agents get the manager's own credentials, as before node users existed.
        _acl_refused = True
        logger.warning(
            "Redis at %s refused to make node users (%s): agents get the manager's own Redis credentials, so "
            "every node can reach every other node's keys; give the manager's user +acl, run Redis 7 or later, "
            "or pass --agent-redis-url",
            urlsplit(settings.redis_url or "").hostname,
            exc,
        )
        return None
    return redis_users.auth(node_id)


def _upsert_node(
    node_id: str, fields: dict[str, Any], digest: str, agent_labels: dict[str, str], api_labels_text: str | None
) -> None:
    """Insert or refresh the node row of a join whose secret was accepted (inside the caller's transaction)."""
    # The first join (or the first since node secrets exist) sets the secret every later join must present.
    values = {**fields, "secret_digest": digest, "forgotten_at": None}  # a forgotten node comes back
    # The API's labels outlive the join: the agent only knows its own.
    api_labels = node_labels.loads(api_labels_text)
    values["labels"] = node_labels.dumps(node_labels.effective(agent_labels, api_labels))
    (
        Node.insert(id=node_id, registered_at=utcnow(), **values)
        .on_conflict(conflict_target=[Node.id], update={getattr(Node, k): v for k, v in values.items()})
        .execute()
    )


def join(settings: Settings, redis: Redis, data: dict[str, Any], request_host: str, actor: str) -> dict[str, Any]:
    """Upsert the node of a joining agent and make its Redis user; returns the JoinResponseSchema data."""
    node_id = data["node_id"]
    if data["protocol"] != PROTOCOL_VERSION:
        raise Invalid(f"Unsupported protocol {data['protocol']}; this manager speaks {PROTOCOL_VERSION}")
    agent_redis_url(settings, request_host, None)  # 503 before anything is written when there is no Redis
    fields = {
        "hostname": data["hostname"],
        "ip": data["ip"],
        "facts": json.dumps(data.get("facts") or {}),
        "interval": data["interval"],
        "version": data.get("version") or "",
    }
    agent_labels = node_labels.valid_agent_labels(node_id, (data.get("facts") or {}).get("labels"))
    digest = job_signing.secret_digest(data["node_secret"])
    with db.write_transaction():
        row = Node.select(Node.api_labels, Node.secret_digest).where(Node.id == node_id).tuples().first()
        known = row is not None
        refused = row is not None and bool(row[1]) and not hmac.compare_digest(row[1], digest)
        if refused:
            # Committed, not rolled back with the refusal: who tried to take a node's place is worth keeping.
            audit.record(actor, "node.join_refused", node_id, {"hostname": data["hostname"], "ip": data["ip"]})
        else:
            _upsert_node(node_id, fields, digest, agent_labels, row[0] if row else None)
            audit.record(actor, "node.join", node_id, {"hostname": data["hostname"], "ip": data["ip"], "known": known})
    if refused:
        logger.warning("node %s: join refused, wrong node secret (from %s, %s)", node_id, data["hostname"], data["ip"])
        raise NotPermitted(
            f"node_secret: node {node_id} is registered with another secret; an agent that lost its data "
            "directory joins as a new node",
        )
    # Only for a join whose secret was accepted: made (again) from scratch, so a re-join also repairs it.
    redis_url = agent_redis_url(settings, request_host, node_redis_auth(settings, redis, node_id))
    logger.info("node %s (%s, %s) %s", node_id, data["hostname"], data["ip"], "re-joined" if known else "joined")
    try:
        # An agent that was offline during a change of its agent-side schedules catches up here (it applies a
        # set only when newer than its own: a set also waiting in its queue changes nothing twice).
        agent_sets.rejoined(redis, settings.offline_after_intervals, node_id)
    except Exception:  # never fail a join over it: the set also waits in its queue
        logger.exception("node %s: agent schedule set not sent at its join", node_id)
    return {
        "node_id": node_id,
        "redis_url": redis_url,
        "queue": keys.node_queue(node_id),
        "protocol": PROTOCOL_VERSION,
        "job_key": job_keys.node_key(node_id).hex(),
    }
