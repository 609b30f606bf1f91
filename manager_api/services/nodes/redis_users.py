"""Each node's own Redis user: made at its join, made again whenever Redis (re)starts, removed when it is
forgotten. Its keys and channels are the node's own (rules()): one node's credentials reach no other node's
queue, jobs, heartbeat, reports or output (tests/faults/test_node_redis_acl.py).

The password is derived from the manager's master key (job_keys), never stored: every manager host and
gunicorn worker agrees on it, and the users can be made again from the database alone.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Iterable

from redis import Redis
from redis.exceptions import RedisError, ResponseError
from rq import Queue
from rq.command import PUBSUB_CHANNEL_TEMPLATE
from rq.defaults import RQ_KEY_PREFIX
from rq.rate_limit import RateLimitRegistry
from rq.suspension import WORKERS_SUSPENDED
from rq.worker import Worker
from rq.worker_registration import REDIS_WORKER_KEYS

from manager_api.services import job_keys
from manager_api.services.nodes.presence import known_ids
from shared import keys

logger = logging.getLogger(__name__)

USER_PREFIX = "corral-node-"
"""A node's Redis user is this and its node id."""

COMMANDS = (
    # The connection: what redis-py and RQ send when they connect, and transactions.
    "ping echo hello select client|setname client|getname client|id client|info client|no-evict info time "
    "multi exec discard watch unwatch "
    # RQ's worker, job, queue and registries, and the agent's own keys (their patterns bound them).
    "exists type del unlink expire pexpire persist ttl pttl get set setex mget "
    "hset hsetnx hget hmget hgetall hdel hexists hincrby hincrbyfloat hkeys hlen "
    "lpush rpush lpop rpop lrem lrange llen lindex lpos lmove blmove blpop brpoplpush rpoplpush "
    "sadd srem smembers sismember smismember scard "
    "zadd zrem zrange zrangebyscore zrevrangebyscore zremrangebyscore zcard zscore zcount zpopmin "
    "xadd xrange xrevrange xlen xread "
    # Scripts, each call checked against the patterns: RQ's (register_script) and the heartbeat's.
    "eval evalsha eval_ro evalsha_ro script|load script|exists "
    # The node's ring and RQ's worker command channel (channel patterns bound them).
    "publish subscribe unsubscribe"
).split()
"""What a node's user may run. Not among them: SCAN, KEYS, RANDOMKEY (every key's name), SCRIPT FLUSH and
FUNCTION (every script, or code of its own), FLUSHALL, FLUSHDB, CONFIG, ACL, CLIENT KILL, DEBUG, MODULE,
SHUTDOWN, MIGRATE, XTRIM/XDEL/XGROUP (XADD's own trim only reaches the node's streams)."""


def user_name(node_id: str) -> str:
    """The Redis user of ``node_id``."""
    return USER_PREFIX + node_id


def password(node_id: str) -> str:
    """The password of ``node_id``'s Redis user: derived from the master key, so never stored."""
    return hmac.new(job_keys.master_key(), b"redis-user:" + node_id.encode(), hashlib.sha256).hexdigest()


def rules(node_id: str) -> list[str]:
    """ACL SETUSER rules of ``node_id``'s user, after its password: only its own keys and channels.

    RQ's keys of the node's queue are ``rq:<kind>:<queue>`` (the queue itself, its registries, its workers)
    and ``rq:queue:<queue>:...`` (the intermediate queue); those of its jobs are ``rq:<kind>:<job id>...`` (the
    job, its results, executions...), and a job id starts with the node id and ``_`` (keys.node_job_id), which
    no node id holds, right after a ``:``; those of its workers carry the worker name, which starts with the
    node id and ``.`` (worker_agent). Three
    keys are shared: RQ's worker index (REDIS_WORKER_KEYS, a set every worker adds itself to and removes itself
    from: a rogue node could remove other workers from RQ's listing, nothing more: no corral code reads it),
    and, read only, the suspension flag, the index of rate limits (empty: corral sets none) and the contents of
    registered scripts (keys.script_content: by digest, shared by every node, never a secret).
    """
    if not keys.NODE_ID.match(node_id):
        raise ValueError(f"not a node id: {node_id!r}")  # it is spelled into glob patterns below
    queue = keys.node_queue(node_id)
    job = keys.node_job_id(node_id, "*")
    patterns = [
        keys.node_prefix(node_id) + "*",
        f"{RQ_KEY_PREFIX}:*:{queue}",
        Queue.redis_queue_namespace_prefix + queue + ":*",
        f"{RQ_KEY_PREFIX}:*:{job}",
        Worker.redis_worker_namespace_prefix + node_id + ".*",
        REDIS_WORKER_KEYS,
    ]
    channels = [keys.node_prefix(node_id) + "*", PUBSUB_CHANNEL_TEMPLATE % f"{node_id}.*"]
    return [
        "-@all",
        *(f"+{command}" for command in COMMANDS),
        *(f"~{pattern}" for pattern in patterns),
        f"%R~{WORKERS_SUSPENDED}",
        f"%R~{RateLimitRegistry.rl_keys_key}",  # read by RQ's registry cleaning; corral sets no rate limits
        f"%R~{keys.SCRIPT_CONTENT_PREFIX}*",  # scripts' contents by digest: no secret in them (issue 17)
        *(f"&{channel}" for channel in channels),
    ]


def auth(node_id: str) -> str:
    """``user:password`` of ``node_id``, for the Redis URL its join answer carries."""
    return f"{user_name(node_id)}:{password(node_id)}"


def create(redis: Redis, node_ids: Iterable[str]) -> int:
    """Make (or make again, from scratch: ``reset``) the users of ``node_ids``, in one round trip; returns how
    many. Raises ResponseError (NOPERM) when the manager's own user may not manage users."""
    ids = [node_id for node_id in node_ids if keys.NODE_ID.match(node_id)]
    if not ids:
        return 0
    pipe = redis.pipeline(transaction=False)
    for node_id in ids:
        # One command, "reset" first: nothing of an older set of rules (or password) survives it.
        pipe.execute_command(
            "ACL", "SETUSER", user_name(node_id), "reset", "on", f">{password(node_id)}", *rules(node_id)
        )
    pipe.execute()
    return len(ids)


def remove(redis: Redis, node_id: str) -> None:
    """Delete ``node_id``'s user and drop its open connections (a forgotten node's agent is cut off at once);
    nothing on an external Redis where the manager may not manage users (it made none)."""
    try:
        redis.acl_deluser(user_name(node_id))
        redis.execute_command("CLIENT", "KILL", "USER", user_name(node_id))
    except ResponseError as exc:
        if "NOPERM" in str(exc) or "No such user" in str(exc):
            return
        raise


def restore_all(client: Redis) -> int:
    """Make the users of every node the database knows (the private Redis just (re)started, and ACL SETUSER
    keeps nothing on disk), through ``client`` before Redis opens its port, so no agent is refused meanwhile;
    returns how many, 0 after logging an error when that failed. The caller (the launcher) has opened the
    database."""
    try:
        count = create(client, known_ids())
    except RedisError as exc:
        logger.error("node Redis users not made again (their agents join again to get them): %s", exc)
        return 0
    except Exception:
        # The database (busy, say): the launcher must not die of it, and every agent refused joins again.
        logger.exception("node Redis users not made again (their agents join again to get them)")
        return 0
    logger.info("%d node Redis users made", count)
    return count
