"""A webhook receiver of the tests' own on a free port: it keeps every request (headers and raw body) and answers
500 where a test asks it to, so each test reads what arrived and checks the signature as the README tells
receivers (alerts, task processors)."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Delivery:
    headers: dict[str, str]
    raw: bytes
    status: int

    @property
    def body(self) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(self.raw)
        return result


@dataclass
class Receiver:
    """What arrived; answers 500 to the first try of a body named in ``fail_first``, to all in ``fail_always``."""

    deliveries: list[Delivery] = field(default_factory=list)
    fail_first: set[str] = field(default_factory=set)  # values of the body's "name"
    fail_always: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, headers: dict[str, str], raw: bytes) -> int:
        with self.lock:
            name = json.loads(raw).get("name")
            seen = any(d.headers.get("X-Corral-Delivery") == headers.get("X-Corral-Delivery") for d in self.deliveries)
            status = 500 if name in self.fail_always or (name in self.fail_first and not seen) else 200
            self.deliveries.append(Delivery(headers, raw, status))
            return status

    def of(self, event: str, **match: Any) -> list[Delivery]:
        with self.lock:
            found = [d for d in self.deliveries if d.headers.get("X-Corral-Event") == event]
        return [d for d in found if all(d.body.get(k) == v for k, v in match.items())]


def start_receiver() -> tuple[ThreadingHTTPServer, Receiver]:
    receiver = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            status = receiver.answer(dict(self.headers.items()), raw)
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, receiver
