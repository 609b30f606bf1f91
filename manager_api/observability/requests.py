"""Every HTTP request the manager answers, counted and timed by route (its URL rule, never the raw path)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask, Response, request

from manager_api.observability.instruments import http_request_duration, http_requests
from shared.api import METRICS_PATH

STARTED = "corral.started"
"""The WSGI environ key holding the request's arrival time (time.perf_counter)."""

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
"""Methods counted by name; any other is counted as ``other``, so a client cannot mint series."""

UNMATCHED = "unmatched"
"""The route of a request no URL rule matched (a 404 or 405): one series for every such path."""


def _stamped(wsgi_app: Callable[..., Iterable[bytes]]) -> Callable[..., Iterable[bytes]]:
    """``wsgi_app`` noting when each request arrived, before any hook runs (a 401 or 413 is timed too)."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        environ[STARTED] = time.perf_counter()
        return wsgi_app(environ, start_response)

    return app


def _observe(response: Response) -> Response:
    rule = request.url_rule.rule if request.url_rule is not None else UNMATCHED
    if rule == METRICS_PATH:
        return response  # a scrape every 15 s would outnumber the API's own requests on a quiet manager
    method = request.method if request.method in METHODS else "other"
    http_requests.labels(rule, method, str(response.status_code)).inc()
    started = request.environ.get(STARTED)
    if started is not None:
        http_request_duration.labels(rule, method).observe(time.perf_counter() - started)
    return response


def init_app(app: Flask) -> None:
    """Count and time every request of ``app`` but the scrapes."""
    app.wsgi_app = _stamped(app.wsgi_app)  # type: ignore[method-assign]
    app.after_request(_observe)
