"""shared.job_signing: the signatures are the HMAC-SHA256 they always were, and the fan-out signer gives the same."""

from __future__ import annotations

import hashlib
import hmac
import json

from shared import job_signing

KEY = job_signing.node_key(b"m" * 32, "node-1")
BODY = {"task_id": "t1", "command": "echo hi", "env": {"B": "2", "A": "1"}, "timeout": 60.0, "deadline": 1.5}


def test_node_key_is_hmac_sha256_of_the_node_id() -> None:
    expected = hmac.new(b"m" * 32, b"corral job key\0node-1", hashlib.sha256).digest()
    assert job_signing.node_key(b"m" * 32, "node-1") == expected


def test_sign_is_hmac_sha256_of_the_sorted_compact_json_of_the_job() -> None:
    message = json.dumps(
        ["f", [BODY], {}, "node-1_abc", "corral.node.node-1"], sort_keys=True, separators=(",", ":")
    ).encode()
    expected = hmac.new(KEY, message, hashlib.sha256).hexdigest()
    assert job_signing.sign(KEY, "f", (BODY,), {}, "node-1_abc", "corral.node.node-1") == expected


def test_signer_signs_as_sign_does() -> None:
    sign_one = job_signing.signer("worker_agent.jobs.run_command", [BODY], {"k": "é"})
    for job_id, queue in [("node-1_abc", "corral.node.node-1"), ('odd"id\\é', "q\u2028")]:
        expected = job_signing.sign(KEY, "worker_agent.jobs.run_command", [BODY], {"k": "é"}, job_id, queue)
        assert sign_one(KEY, job_id, queue) == expected
        assert job_signing.verify(KEY, expected, "worker_agent.jobs.run_command", [BODY], {"k": "é"}, job_id, queue)


def test_sign_message_is_hmac_sha256_of_stream_and_text() -> None:
    expected = hmac.new(KEY, b"stream\0text", hashlib.sha256).hexdigest()
    assert job_signing.sign_message(KEY, "stream", "text") == expected
    assert job_signing.verify_message(KEY, expected, "stream", "text")
    assert not job_signing.verify_message(KEY, expected, "stream", "other")
