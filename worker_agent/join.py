"""Joining the manager: POST the node's description with the join token until the manager answers."""

from __future__ import annotations

import json
import logging
import random
import ssl
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any

from marshmallow import ValidationError

from shared import api, tls
from shared.defaults import PROTOCOL_VERSION
from shared.messages import JoinRequestSchema, JoinResponseSchema, dump

logger = logging.getLogger(__name__)

FIRST_RETRY_SECONDS = 0.2
"""Pause after the first failed attempt; it doubles on each failure."""

MAX_RETRY_SECONDS = 5.0
"""Longest pause between two attempts; also the pause after a rejected or missing token."""

REQUEST_TIMEOUT = 10.0
"""Seconds one join request may take."""


class JoinFailed(Exception):
    """One join attempt failed; ``slow`` asks for the longest pause before the next one, ``retry_after`` (a 429's
    Retry-After, seconds) for that pause."""

    def __init__(self, message: str, slow: bool = False, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.slow = slow
        self.retry_after = retry_after


def paced_wait(retry_after: float) -> float:
    """The pause after a 429: its Retry-After plus up to as much again at random, so that the thousands of agents
    a manager restart sends back at once do not all come back in the same second."""
    return retry_after + random.uniform(0, retry_after)


def retry_after_of(exc: urllib.error.HTTPError) -> float:
    """A 429's Retry-After in seconds (at least 1; an HTTP date or nonsense counts as 1)."""
    try:
        return max(1.0, float(exc.headers.get("Retry-After", "1")))
    except ValueError:
        return 1.0


def join(
    manager_url: str,
    request: Mapping[str, Any],
    token: Callable[[], str | None],
    stop: threading.Event,
    max_delay: float = MAX_RETRY_SECONDS,
    context: ssl.SSLContext | None = None,
) -> dict[str, Any] | None:
    """Join until the manager accepts; returns its JoinResponseSchema answer, or None once ``stop`` is set.

    ``token`` is called before every attempt: a token file may appear only when the manager starts.
    """
    body = dump(JoinRequestSchema, dict(request))
    node_id = body["node_id"]
    delay = FIRST_RETRY_SECONDS
    attempt = 0
    paced = 0  # 429s answered so far: the first is logged, the others are not (the manager paces, all is well)
    while not stop.is_set():
        attempt += 1
        try:
            answer = join_once(manager_url, body, token(), context)
        except JoinFailed as exc:
            if exc.retry_after is not None:
                paced += 1
                wait = paced_wait(exc.retry_after)
                if paced == 1:
                    logger.warning("node %s: %s; retrying after it (with jitter) until joined", node_id, exc)
                if stop.wait(wait):
                    break
                continue
            wait = max_delay if exc.slow else delay
            log = logger.error if exc.slow else logger.warning
            log("node %s: join attempt %d failed: %s; retrying in %.1fs", node_id, attempt, exc, wait)
            delay = min(delay * 2, max_delay)
            if stop.wait(wait):
                break
            continue
        if answer["protocol"] != PROTOCOL_VERSION:
            logger.warning(
                "node %s: manager speaks protocol %s, this agent %s",
                node_id,
                answer["protocol"],
                PROTOCOL_VERSION,
            )
        logger.info("node %s: joined %s, queue %s", node_id, manager_url, answer["queue"])
        return answer
    logger.info("node %s: join abandoned, stop requested", node_id)
    return None


def join_once(
    manager_url: str, body: Mapping[str, Any], token: str | None, context: ssl.SSLContext | None = None
) -> dict[str, Any]:
    """One POST to the join endpoint; raises JoinFailed.

    Sent even without a token, so that the failure says what is really wrong: a manager unreachable at that
    URL, or one that answers but wants a token this agent does not have.
    """
    request = urllib.request.Request(
        manager_url.rstrip("/") + api.JOIN_PATH,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", **(api.bearer(token) if token else {})},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT, context=context) as response:
            raw = response.read()
    except urllib.error.HTTPError as exc:
        with exc:  # holds the connection open until closed
            detail = _error_message(exc)
        if exc.code == 401 and not token:
            raise JoinFailed(
                f"the manager at {manager_url} wants a join token and this agent has none "
                "(give --token, CORRAL_JOIN_TOKEN or --token-file)",
                slow=True,
            ) from exc
        if exc.code == 401:
            raise JoinFailed(f"join token rejected by the manager ({detail})", slow=True) from exc
        if exc.code == 429:
            raise JoinFailed(f"manager paces joins ({detail})", retry_after=retry_after_of(exc)) from exc
        raise JoinFailed(f"manager answered {exc.code}: {detail}", slow=400 <= exc.code < 500) from exc
    except (urllib.error.URLError, OSError) as exc:
        if tls.is_verify_failure(exc):
            # Retried slowly like a rejected token: a certificate does not become trusted by itself.
            raise JoinFailed(tls.verify_failure_message(manager_url), slow=True) from None
        reason = getattr(exc, "reason", exc)
        raise JoinFailed(f"manager unreachable at {manager_url}: {reason}") from exc
    try:
        answer: dict[str, Any] = JoinResponseSchema().load(json.loads(raw))
    except (ValueError, ValidationError) as exc:
        raise JoinFailed(f"malformed join answer: {exc}", slow=True) from exc
    return answer


def _error_message(exc: urllib.error.HTTPError) -> str:
    try:
        body = json.loads(exc.read() or b"{}")
        return str(body.get("error") or body)
    except (ValueError, AttributeError, OSError):
        return exc.reason if isinstance(exc.reason, str) else str(exc)
