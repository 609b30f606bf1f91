"""The console's live streams when every slot of the process is taken: a stream that says when to come back."""

from __future__ import annotations

from flask import Flask

from manager_api.console import live


def test_a_stream_with_no_free_slot_tells_the_browser_when_to_come_back() -> None:
    app = Flask(__name__)
    opened = []
    for _ in range(live.STREAMS_PER_PROCESS):
        with app.test_request_context():
            opened.append(live.respond(lambda: iter(["data: x\n\n"])))
    try:
        with app.test_request_context():
            busy = live.respond(lambda: iter(["data: never\n\n"]))
        # Not an error status: EventSource would fail the connection for good; it reconnects after ``retry``.
        assert busy.status_code == 200 and busy.mimetype == "text/event-stream"
        assert busy.get_data(as_text=True) == f"retry: {live.BUSY_RETRY_MS}\n\n"
    finally:
        for response in opened:
            response.close()  # gives each slot back
    with app.test_request_context():
        again = live.respond(lambda: iter(["data: y\n\n"]))
    assert "data: y" in again.get_data(as_text=True)  # a slot is free again
    again.close()
