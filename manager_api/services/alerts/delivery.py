"""The alerts' sender: a thread of the duties that POSTs due Alert rows to every webhook URL, signed.

Delivery never blocks the duties or the API: raising only writes a row (events), and this thread alone waits
on the network, with a short timeout. An attempt that any URL does not answer with a 2xx is tried again
after 1, 2, 4 ... seconds (at most BACKOFF_CAP), for ``max_attempts`` in all, then given up. A URL that
answered 2xx is never sent that alert again (Alert.acked), and a retry sends the very same body and delivery
id, so a receiver can drop what it has seen. Between a 2xx and its commit a crash can send one alert twice:
delivery is at least once, the delivery id tells the copies apart. Every alert sent or given up has its
audit entry.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Sequence
from datetime import timedelta

from manager_api import db
from manager_api.models import Alert, utcnow
from manager_api.services import audit
from manager_api.services.webhooks import OutboxThread, backoff, headers, post, shown

logger = logging.getLogger(__name__)

ACTOR = "duties"
"""Who the audit log says sent or gave up an alert (the duties' actor, as for node transitions)."""

POLL_SECONDS = 0.5
"""How often the sender looks for due alerts."""

BATCH = 20
"""Alerts taken per look: a backlog is worked through without holding the sender on one query."""

RETENTION = timedelta(days=7)
"""Alerts are deleted this long after they were raised (their audit entries stay): by then each was sent or
given up, or no URL was configured to send it to."""

_SPLIT = re.compile(r"[\s,]+")


def parse_urls(text: str | None) -> list[str]:
    """The URLs of CORRAL_ALERT_URLS (space or comma separated)."""
    return [url for url in _SPLIT.split(text or "") if url]


class Sender(OutboxThread):
    """Delivers due alerts to ``urls`` every POLL_SECONDS while ``may_send()`` (the duties hold their lock)."""

    name = "corral-alerts"
    poll_seconds = POLL_SECONDS

    def __init__(
        self, urls: Sequence[str], secret: bytes, max_attempts: int, may_send: Callable[[], bool] = lambda: True
    ) -> None:
        super().__init__(may_send)
        self.urls = list(urls)
        self.secret = secret
        self.max_attempts = max(1, max_attempts)

    def start(self) -> None:
        logger.info("alerts: sending to %s", ", ".join(shown(url) for url in self.urls))
        super().start()

    def work(self) -> None:
        while self.deliver_due() == BATCH and not self.stopping():
            pass

    def deliver_due(self) -> int:
        """One attempt at every due alert (at most BATCH); returns how many were tried."""
        due = list(
            Alert.select()
            .where((Alert.state == "pending") & (Alert.next_at <= utcnow()))
            .order_by(Alert.next_at, Alert.id)
            .limit(BATCH)
        )
        for alert in due:
            self._attempt(alert)
        return len(due)

    def _attempt(self, alert: Alert) -> None:
        body = alert.body.encode()
        signed = headers(alert.event, alert.event_id, self.secret, body, "corral-alerts")
        acked: list[str] = json.loads(alert.acked)
        attempt = alert.attempts + 1
        sent_now: list[str] = []
        errors: dict[str, str] = {}
        for url in self.urls:
            if url in acked:
                continue
            error = post(url, body, signed)
            if error is None:
                sent_now.append(url)
            else:
                errors[shown(url)] = error
        done = not errors
        given_up = not done and attempt >= self.max_attempts
        state = "sent" if done else "given_up" if given_up else "pending"
        with db.write_transaction():
            Alert.update(
                attempts=attempt,
                acked=json.dumps(acked + sent_now),
                state=state,
                next_at=utcnow() + timedelta(seconds=backoff(attempt)),
                last_error="; ".join(f"{url}: {error}" for url, error in errors.items()),
            ).where(Alert.id == alert.id).execute()
            for url in sent_now:
                audit.record(
                    ACTOR, "alert.sent", alert.event_id, {"event": alert.event, "url": shown(url), "attempt": attempt}
                )
            if given_up:
                audit.record(
                    ACTOR,
                    "alert.given_up",
                    alert.event_id,
                    {"event": alert.event, "attempts": attempt, "errors": errors},
                )
        for url in sent_now:
            logger.info("alert %s (%s) sent to %s, attempt %d", alert.event_id, alert.event, shown(url), attempt)
        if given_up:
            logger.error("alert %s (%s) given up after %d attempts: %s", alert.event_id, alert.event, attempt, errors)
        elif errors:
            logger.warning(
                "alert %s (%s) attempt %d failed, again in %.0f s: %s",
                alert.event_id,
                alert.event,
                attempt,
                backoff(attempt),
                errors,
            )


def prune() -> int:
    """Delete alerts raised more than RETENTION ago (their audit entries stay); returns how many."""
    with db.write_transaction():
        return int(Alert.delete().where(Alert.created_at < utcnow() - RETENTION).execute())
