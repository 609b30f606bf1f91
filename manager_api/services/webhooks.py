"""Signed JSON webhooks, as the alerts and the task processors POST them: one way to sign, send and back off.

A body is signed with HMAC-SHA256 under a shared secret (``X-Corral-Signature: sha256=<hex>``, as GitHub signs
its webhooks); a receiver checks it on the raw bytes before parsing them. Each body keeps one delivery id at
every attempt (``X-Corral-Delivery``), so a receiver can drop the copies an at-least-once sender may make.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from urllib.parse import urlsplit

from manager_api import db

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Corral-Signature"
"""``sha256=<hex HMAC-SHA256 of the raw body under the shared secret>``, as GitHub signs its webhooks."""
EVENT_HEADER = "X-Corral-Event"
DELIVERY_HEADER = "X-Corral-Delivery"
"""The delivery's id: the same at every attempt."""

TIMEOUT_SECONDS = 5.0
"""How long one POST may take (connect and answer) before it counts as failed."""

BACKOFF_CAP = 300.0
"""The longest wait between two attempts (seconds)."""


def check_url(url: str, what: str = "alert URL") -> str | None:
    """Why ``url`` cannot be a webhook URL, or None."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a port out of range or not a number
    except ValueError:
        return f"{what} {shown(url)!r} is not a valid URL (its host or port)"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"{what} {shown(url)!r} must be http:// or https:// with a host"
    return None


def shown(url: str) -> str:
    """``url`` as logs, answers and the audit log show it: scheme, host and port only (paths of webhooks hold
    tokens)."""
    try:
        parts = urlsplit(url)
    except ValueError:  # an unclosed "[" of an IPv6 host
        return "(not a URL)"
    host = parts.hostname or ""
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    return f"{parts.scheme}://{host}{port}"


def sign(secret: bytes, body: bytes) -> str:
    """The X-Corral-Signature value of ``body``."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def backoff(attempts: int) -> float:
    """Seconds to wait after the ``attempts``-th failed attempt: 1, 2, 4 ... up to BACKOFF_CAP."""
    return float(min(BACKOFF_CAP, 2 ** max(0, attempts - 1)))


def headers(event: str, delivery_id: str, secret: bytes, body: bytes, agent: str) -> dict[str, str]:
    """The headers of one signed delivery."""
    return {
        "Content-Type": "application/json",
        "User-Agent": agent,
        EVENT_HEADER: event,
        DELIVERY_HEADER: delivery_id,
        SIGNATURE_HEADER: sign(secret, body),
    }


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # A redirect is an answer that is not 2xx: following it would turn the POST into a GET elsewhere.
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


_opener = urllib.request.build_opener(_NoRedirect)


def post(url: str, body: bytes, headers: dict[str, str]) -> str | None:
    """POST ``body``; None on a 2xx, else what went wrong (never the URL's path or the secret)."""
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with _opener.open(request, timeout=TIMEOUT_SECONDS) as answer:
            status = answer.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (OSError, ValueError) as exc:  # refused, timed out, DNS, TLS
        return type(exc).__name__ + (f": {exc.reason}" if isinstance(exc, urllib.error.URLError) else "")
    return None if 200 <= status < 300 else f"HTTP {status}"


class OutboxThread:
    """A thread of the duties that works an outbox of webhooks (``work()``) every ``poll_seconds`` while
    ``may_send()`` (the duties hold their lock): the alerts' and the processors' senders. Only this thread waits
    on the network, so no POST ever delays a tick or a request."""

    name = "corral-webhooks"
    poll_seconds = 0.5

    def __init__(self, may_send: Callable[[], bool] = lambda: True) -> None:
        self.may_send = may_send
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def work(self) -> None:
        """One pass over the outbox (the thread's database connection is open)."""
        raise NotImplementedError

    def stopping(self) -> bool:
        """Whether stop() was called: a long pass ends early."""
        return self._stop.is_set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def run(self) -> None:
        try:
            while not self._stop.wait(self.poll_seconds):
                try:
                    db.connect()
                    if self.may_send():
                        self.work()
                except Exception:
                    logger.exception("%s: unexpected error; going on", self.name)
                    db.close()
        finally:
            db.close()
