"""Live pages: Server-Sent Events that carry a fragment of HTML whenever it changes.

Each stream holds a gunicorn thread, so a process serves at most STREAMS_PER_PROCESS at once (the others get a
stream that only says when to come back, and their browser does), and a stream ends after STREAM_SECONDS:
EventSource reconnects by itself (after RETRY_MS), which spreads long-lived pages over the workers and lets a
restarted manager take them back.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping

from flask import Response, stream_with_context

from manager_api.stopping import STOPPING

STREAMS_PER_PROCESS = 4
"""Live streams one manager process serves at once (of its 8 threads: the API keeps the rest)."""

STREAM_SECONDS = 30.0
"""How long one stream lasts before the browser opens the next."""

PULSE_SECONDS = 0.5
"""How often a live stream writes, changed or not: how soon a page left is noticed (a write to it fails)."""

RETRY_MS = 1000
"""What the browser waits before it reconnects (the SSE ``retry`` field)."""

BUSY_RETRY_MS = 2000
"""What the browser waits before it tries again when every slot of the process is taken."""

_slots = threading.BoundedSemaphore(STREAMS_PER_PROCESS)


def event(name: str, html: str, entry_id: str | None = None) -> str:
    """One SSE event carrying ``html`` (``entry_id``: what a reconnecting browser sends as Last-Event-ID)."""
    head = f"id: {entry_id}\n" if entry_id else ""
    data = "".join(f"data: {line}\n" for line in html.splitlines() or [""])
    return f"{head}event: {name}\n{data}\n"


def respond(events: Callable[[], Iterator[str]]) -> Response:
    """An event stream of what ``events()`` yields, in one of this process's STREAMS_PER_PROCESS slots; the slot is
    given back when the response closes. With none free, a stream that holds only ``retry``: EventSource comes
    back by itself after BUSY_RETRY_MS, with its Last-Event-ID (a 503 would fail the connection for good: the
    browser logs an error and the page stays still until htmx opens a new stream without that id)."""
    if not _slots.acquire(blocking=False):
        busy = Response(f"retry: {BUSY_RETRY_MS}\n\n", mimetype="text/event-stream")
        busy.headers["Cache-Control"] = "no-store"
        return busy
    released = threading.Event()

    def release() -> None:
        # Closing the response (the stream ended, or the browser left) gives the slot back, once.
        if not released.is_set():
            released.set()
            _slots.release()

    response = Response(stream_with_context(events()), mimetype="text/event-stream")
    response.call_on_close(release)
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Accel-Buffering"] = "no"  # a proxy in front must not hold the events back
    return response


def stream(fragments: Mapping[str, Callable[[], str]], every: float = 2.0) -> Response:
    """An event stream of one event per fragment: its ``render()``'s HTML at once, then again each time it
    changes (looked at every ``every`` seconds), until STREAM_SECONDS are over or the manager stops. The key of
    ``fragments`` is the event's name, which the page's ``sse-swap`` attribute names."""

    def events() -> Iterator[str]:
        yield f"retry: {RETRY_MS}\n\n"
        last: dict[str, str] = {}
        now = time.monotonic()
        ends, look = now + STREAM_SECONDS, now
        while True:
            if time.monotonic() >= look:
                look = time.monotonic() + every
                changed = []
                for name, render in fragments.items():
                    html = render()
                    if html != last.get(name):
                        last[name] = html
                        changed.append(event(name, html))
                if changed:
                    yield "".join(changed)
                    continue
            # A comment each pulse: a page that was left is noticed within a pulse or two (the write fails)
            # and gives its slot back, rather than after STREAM_SECONDS with the slot held.
            yield ":\n\n"
            if time.monotonic() + PULSE_SECONDS > ends or STOPPING.wait(PULSE_SECONDS):
                return  # over, or the worker is stopping: the browser reconnects to another (or the next) one

    return respond(events)
