"""The agent's status port (127.0.0.1): its liveness, identity and running counts as JSON on GET /healthz, and
Prometheus text on GET /metrics (worker_agent.scrape)."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from shared import api

logger = logging.getLogger(__name__)


class StatusServer:
    """Serves ``status()`` as JSON on ``GET /healthz`` and ``metrics()`` (content type, body) on ``GET /metrics``
    from a daemon thread."""

    def __init__(
        self,
        port: int,
        status: Callable[[], dict[str, Any]],
        host: str = "127.0.0.1",
        metrics: Callable[[], tuple[str, bytes]] | None = None,
    ) -> None:
        handler = _handler_for(status, metrics)
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="corral-status", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> StatusServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _handler_for(
    status: Callable[[], dict[str, Any]], metrics: Callable[[], tuple[str, bytes]] | None
) -> type[BaseHTTPRequestHandler]:
    class StatusHandler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            path = self.path.split("?", 1)[0]
            if path == api.METRICS_PATH and metrics is not None:
                self._send(200, *metrics())
            elif path == api.HEALTH_PATH:
                self._reply(200, {"status": "ok", **status()})
            else:
                self._reply(404, {"error": "not found"})

        def _reply(self, code: int, body: dict[str, Any]) -> None:
            self._send(code, "application/json", json.dumps(body).encode())

        def _send(self, code: int, content_type: str, data: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            logger.debug("health endpoint: " + format, *args)

    return StatusHandler
