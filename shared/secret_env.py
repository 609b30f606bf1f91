"""Secret env values on their way to one node: sealed by the manager for that node alone, opened by its agent
only when it starts the process that needs them.

The key is derived from the node's job key (shared.job_signing.node_key) by HKDF under a label of its own, so
the signing key is never used as an encryption key as is. AES-GCM binds each sealed value to its context (the
fleet task id, say) as associated data: a sealed blob copied into another job does not open. A job payload,
Redis and the agent's records hold only this form; the plaintext exists in the child's environment only.
"""

from __future__ import annotations

import base64
import json
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_LABEL = b"corral secret env v1"
_NONCE_BYTES = 12


def instance_context(app: str, instance_id: str) -> str:
    """What a RUN_INSTANCE's secret env is bound to: its app and instance (both sides know them)."""
    return f"app:{app}:{instance_id}"


def component_context(business_id: str, component_id: str, generation: int) -> str:
    """What a DEPLOY_COMPONENT's secret env is bound to: its business, component and generation."""
    return f"component:{business_id}:{component_id}:{generation}"


class SecretEnvError(Exception):
    """A sealed env that does not open with this node's key and context (another node's, altered, moved)."""


def _cipher(job_key: bytes) -> AESGCM:
    """The node's AES-GCM. cryptography is imported here, at the first secret: most jobs carry none, and its
    import costs every agent about 7 ms of CPU at start (50 agents starting on 2 cores feel each of them)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return AESGCM(HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_LABEL).derive(job_key))


def seal(job_key: bytes, context: str, env: dict[str, str]) -> str:
    """``env`` encrypted for the node holding ``job_key``, bound to ``context``; base64 text."""
    nonce = os.urandom(_NONCE_BYTES)
    plain = json.dumps(env, sort_keys=True, separators=(",", ":")).encode()
    sealed = _cipher(job_key).encrypt(nonce, plain, context.encode())
    return base64.b64encode(nonce + sealed).decode()


def open_sealed(job_key: bytes | None, context: str, sealed: str | None) -> dict[str, str]:
    """The env ``seal`` sealed (empty for none); SecretEnvError when it does not open."""
    if not sealed:
        return {}
    if job_key is None:
        raise SecretEnvError("this agent has no job key to open secret env with")
    try:
        raw = base64.b64decode(sealed, validate=True)
        plain = _cipher(job_key).decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], context.encode())
        env = json.loads(plain)
    except Exception as exc:  # InvalidTag, bad base64, bad JSON: one answer, no detail of the value
        raise SecretEnvError(f"secret env does not open for {context}: {type(exc).__name__}") from None
    if not isinstance(env, dict):
        raise SecretEnvError(f"secret env of {context} is not a mapping")
    return {str(name): str(value) for name, value in env.items()}
