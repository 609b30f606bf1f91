"""shared.secret_env: a secret env sealed for one node opens only with that node's key and context."""

from __future__ import annotations

import pytest

from shared import job_signing, secret_env


def _key(node_id: str) -> bytes:
    return job_signing.node_key(b"m" * 32, node_id)


def test_sealed_env_opens_with_its_node_key_and_context_only() -> None:
    sealed = secret_env.seal(_key("n1"), "task:t1", {"DB_PASSWORD": "hunter2"})
    assert "hunter2" not in sealed
    assert secret_env.open_sealed(_key("n1"), "task:t1", sealed) == {"DB_PASSWORD": "hunter2"}
    with pytest.raises(secret_env.SecretEnvError):
        secret_env.open_sealed(_key("n2"), "task:t1", sealed)  # another node's key
    with pytest.raises(secret_env.SecretEnvError):
        secret_env.open_sealed(_key("n1"), "task:t2", sealed)  # moved into another task's job
    with pytest.raises(secret_env.SecretEnvError):
        secret_env.open_sealed(None, "task:t1", sealed)
    tampered = sealed[:-4] + ("AAAA" if not sealed.endswith("AAAA") else "BBBB")
    with pytest.raises(secret_env.SecretEnvError):
        secret_env.open_sealed(_key("n1"), "task:t1", tampered)
    assert secret_env.open_sealed(None, "task:t1", None) == {}


def test_two_seals_of_one_env_differ() -> None:
    # A fresh nonce each time: equal secrets on two jobs are not visible as equal.
    assert secret_env.seal(_key("n1"), "c", {"A": "1"}) != secret_env.seal(_key("n1"), "c", {"A": "1"})
