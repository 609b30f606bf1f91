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
from collections.abc import Callable, Mapping, Sequence
from typing import Any

META_FIELD = "corral_sig"
"""The RQ job meta field holding the signature (hex)."""


def node_key(master_key: bytes, node_id: str) -> bytes:
    """The signing key of one node's jobs."""
    return hmac.digest(master_key, b"corral job key\0" + node_id.encode(), "sha256")


def _json(value: Any) -> str:
    # JSON as RQ's JSON serializer carries it: a tuple and the list it arrives as encode the same.
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _message(func_name: str, args: Sequence[Any], kwargs: Mapping[str, Any], job_id: str, queue: str) -> bytes:
    return _json([func_name, list(args), dict(kwargs), job_id, queue]).encode()


def _hmac_hex(key: bytes, message: bytes) -> str:
    # The one-shot form (hmac.digest) gives the same HMAC as hmac.new(...).hexdigest() without building an HMAC
    # object: it is the work of every job and report signed or checked, tens of thousands per fleet task.
    return hmac.digest(key, message, "sha256").hex()


def sign(key: bytes, func_name: str, args: Sequence[Any], kwargs: Mapping[str, Any], job_id: str, queue: str) -> str:
    """The signature of one job: its function, arguments, id and the queue it is put on."""
    return _hmac_hex(key, _message(func_name, args, kwargs, job_id, queue))


def signer(func_name: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Callable[[bytes, str, str], str]:
    """``sign`` of one function and arguments sent to many nodes, as f(key, job id, queue): the arguments are
    encoded once (a fleet task's body is the same on 10,000 nodes), the message signed is the same bytes."""
    head = _json([func_name, list(args), dict(kwargs)])[:-1].encode() + b","

    def sign_one(key: bytes, job_id: str, queue: str) -> str:
        return _hmac_hex(key, head + _json(job_id).encode() + b"," + _json(queue).encode() + b"]")

    return sign_one


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
    return _hmac_hex(key, stream.encode() + b"\0" + text.encode())


def verify_message(key: bytes, signature: object, stream: str, text: str) -> bool:
    """Whether ``signature`` is that of ``text`` on ``stream``, made with ``key``."""
    return isinstance(signature, str) and hmac.compare_digest(signature, sign_message(key, stream, text))


def secret_digest(node_secret: str) -> str:
    """What the manager keeps of a node's secret (SHA-256 hex): enough to check it, useless to present it."""
    return hashlib.sha256(node_secret.encode()).hexdigest()
