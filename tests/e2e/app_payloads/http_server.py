"""An app instance for the e2e tests: HTTP on the port given (argv[2]); / answers 200, /sick 500, /env the
process's environment as JSON, /file/<path> a file under the working directory."""

import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class Handler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass

    def do_GET(self) -> None:  # noqa: N802
        if self.path == "/sick":
            self._answer(500, b"sick\n")
        elif self.path == "/env":
            self._answer(200, json.dumps(dict(os.environ)).encode())
        elif self.path.startswith("/file/"):
            path = Path.cwd() / self.path[len("/file/") :]
            self._answer(200, path.read_bytes()) if path.is_file() else self._answer(404, b"no such file\n")
        else:
            self._answer(200, b"ok\n")

    def _answer(self, code: int, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


ThreadingHTTPServer(("127.0.0.1", int(sys.argv[2])), Handler).serve_forever()
