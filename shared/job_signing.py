"""Signatures of the jobs the manager puts on node queues, so an agent runs only what the manager sent it,
and of the reports agents send back, so the manager believes a node's report only from that node.

Every agent shares the same Redis user, so a compromised node could push jobs onto another node's queue.
The manager therefore signs each job with that node's own key, HMAC-SHA256(master key, node id), which it
hands out only in the join answer of the agent holding the node's secret. An agent checks the signature
before it resolves the job's function; a job signed for another node or another queue, altered, or not
signed at all is refused. HMAC keeps this at microseconds per job, for fan-outs to 10,000 nodes.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence
from typing import Any

META_FIELD = "corral_sig"
"""The RQ job meta field holding the signature (hex)."""


def node_key(master_key: bytes, node_id: str) -> bytes:
    """The signing key of one node's jobs."""
    return hmac.new(master_key, b"corral job key\0" + node_id.encode(), hashlib.sha256).digest()


def _message(func_name: str, args: Sequence[Any], kwargs: Mapping[str, Any], job_id: str, queue: str) -> bytes:
    # JSON as RQ's JSON serializer carries it: a tuple and the list it arrives as encode the same.
    return json.dumps(
        [func_name, list(args), dict(kwargs), job_id, queue], sort_keys=True, separators=(",", ":")
    ).encode()


def sign(key: bytes, func_name: str, args: Sequence[Any], kwargs: Mapping[str, Any], job_id: str, queue: str) -> str:
    """The signature of one job: its function, arguments, id and the queue it is put on."""
    return hmac.new(key, _message(func_name, args, kwargs, job_id, queue), hashlib.sha256).hexdigest()


def verify(
    key: bytes,
    signature: object,
    func_name: str,
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
    job_id: str,
    queue: str,
) -> bool:
    """Whether ``signature`` is this job's, made with ``key``."""
    if not isinstance(signature, str):
        return False
    return hmac.compare_digest(signature, sign(key, func_name, args, kwargs, job_id, queue))


def sign_message(key: bytes, stream: str, text: str) -> str:
    """The signature of one report or event (its JSON text) that a node appends to ``stream``."""
    return hmac.new(key, stream.encode() + b"\0" + text.encode(), hashlib.sha256).hexdigest()


def verify_message(key: bytes, signature: object, stream: str, text: str) -> bool:
    """Whether ``signature`` is that of ``text`` on ``stream``, made with ``key``."""
    return isinstance(signature, str) and hmac.compare_digest(signature, sign_message(key, stream, text))


def secret_digest(node_secret: str) -> str:
    """What the manager keeps of a node's secret (SHA-256 hex): enough to check it, useless to present it."""
    return hashlib.sha256(node_secret.encode()).hexdigest()
