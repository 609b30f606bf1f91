"""A Server-Sent Events parser (the WHATWG event-stream format) over any iterable of lines."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class SseEvent:
    """One dispatched event: its type (``message`` when unnamed), its data and its last id."""

    event: str
    data: str
    id: str | None = None


def parse_sse(lines: Iterable[bytes | str]) -> Iterator[SseEvent]:
    """Yield each event as soon as its blank line arrives; comments and unknown fields are ignored."""
    event = ""
    data: list[str] = []
    last_id: str | None = None
    for raw in lines:
        line = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
        line = line.rstrip("\r\n")
        if not line:
            if data:
                yield SseEvent(event or "message", "\n".join(data), last_id)
            event, data = "", []
            continue
        if line.startswith(":"):
            continue  # a comment: servers send these as keep-alives
        field, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if field == "event":
            event = value
        elif field == "data":
            data.append(value)
        elif field == "id" and "\0" not in value:
            last_id = value
    # A stream cut before the blank line never dispatches its last event (the spec says so).
