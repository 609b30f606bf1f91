"""A real HTTP server that answers the agent join call like the manager would (the manager is not needed)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from shared import api, keys
from shared.defaults import PROTOCOL_VERSION
from shared.messages import JoinRequestSchema


class FakeManager:
    """Serves POST /api/agent/join on 127.0.0.1: 401 unless the bearer token matches, else the Redis URL."""

    def __init__(self, token: str, redis_url: str) -> None:
        self.token = token
        self.redis_url = redis_url
        self.joins: list[dict[str, Any]] = []
        self.rejected = 0
        manager = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if self.path != api.JOIN_PATH:
                    return self._reply(404, {"error": "not found"})
                if self.headers.get(api.AUTH_HEADER) != f"Bearer {manager.token}":
                    manager.rejected += 1
                    return self._reply(401, {"error": "invalid join token"})
                joined = JoinRequestSchema().load(body)
                manager.joins.append(joined)
                node_id = joined["node_id"]
                return self._reply(
                    200,
                    {
                        "node_id": node_id,
                        "redis_url": manager.redis_url,
                        "queue": keys.node_queue(node_id),
                        "protocol": PROTOCOL_VERSION,
                    },
                )

            def _reply(self, code: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> FakeManager:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
