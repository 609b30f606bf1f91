"""A small HTTP client for the manager's JSON API and its Server-Sent Events, on the standard library."""

from __future__ import annotations

import json
import logging
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from http.client import HTTPResponse
from typing import Any

from shared import tls
from shared.api import bearer

from .config import Settings

logger = logging.getLogger(__name__)

REQUEST_TIMEOUT = 30.0
"""Seconds a plain API call may take (calls with ``?wait=`` add their wait to it)."""

STREAM_READ_TIMEOUT = 60.0
"""Seconds without a byte before a followed output stream counts as dropped (the manager sends keep-alives)."""


class ApiError(Exception):
    """A failed call: the HTTP status (0 when the manager was not reached) and the API's message."""

    def __init__(self, status: int, message: str, body: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.body: Mapping[str, Any] = body or {}

    def __str__(self) -> str:
        return f"{self.message} (HTTP {self.status})" if self.status else self.message


def _error(status: int, body: bytes, reason: str) -> ApiError:
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("error"), str):
        message = data["error"]
        if status == 429:
            # The manager's own words say the limit and the wait; say whose limit it is and what to do.
            message = f"the manager refused the call: {message} (too many calls: wait and try again)"
        return ApiError(status, message, data)
    return ApiError(status, reason or f"HTTP {status}")


class Client:
    """Calls the manager at ``settings.url`` with the bearer token when one is set."""

    def __init__(self, settings: Settings) -> None:
        self.url = settings.url
        self._context: ssl.SSLContext | None = None
        if self.url.startswith("https://"):
            try:
                self._context = tls.client_context(settings.ca_bundle)
            except OSError as exc:
                raise ApiError(0, f"cannot use CA bundle {settings.ca_bundle}: {exc.strerror or exc}") from None
        self._headers = {"Accept": "application/json", "User-Agent": "corral-cli"}
        if settings.token:
            self._headers.update(bearer(settings.token))

    def __repr__(self) -> str:
        return f"Client({self.url!r})"

    def _open(
        self,
        method: str,
        path: str,
        body: Any,
        query: Mapping[str, Any] | None,
        timeout: float,
        extra_headers: Mapping[str, str] | None = None,
    ) -> HTTPResponse:
        url = self.url + path
        if query:
            url += "?" + urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
        headers = dict(self._headers)
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        headers.update(extra_headers or {})
        request = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            return urllib.request.urlopen(request, timeout=timeout, context=self._context)  # noqa: S310 - the URL is checked http(s)
        except urllib.error.HTTPError as exc:
            with exc:
                raise _error(exc.code, exc.read(), str(exc.reason)) from None
        except urllib.error.URLError as exc:
            if tls.is_verify_failure(exc):
                raise ApiError(0, tls.verify_failure_message(self.url)) from None
            raise ApiError(0, f"cannot reach the manager at {self.url}: {exc.reason}") from None
        except (TimeoutError, ConnectionError) as exc:
            raise ApiError(0, f"cannot reach the manager at {self.url}: {exc}") from None

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: Mapping[str, Any] | None = None,
        timeout: float = REQUEST_TIMEOUT,
    ) -> Any:
        """One JSON call; returns the decoded answer or raises ApiError."""
        logger.debug("%s %s", method, path)
        with self._open(method, path, body, query, timeout) as answer:
            raw = answer.read()
        try:
            return json.loads(raw) if raw else None
        except ValueError:
            raise ApiError(answer.status, f"the manager answered {method} {path} with non-JSON") from None

    def get(self, path: str, query: Mapping[str, Any] | None = None, timeout: float = REQUEST_TIMEOUT) -> Any:
        return self.call("GET", path, query=query, timeout=timeout)

    def post(
        self, path: str, body: Any = None, query: Mapping[str, Any] | None = None, timeout: float = REQUEST_TIMEOUT
    ) -> Any:
        return self.call("POST", path, body=body, query=query, timeout=timeout)

    def put(self, path: str, body: Any = None, timeout: float = REQUEST_TIMEOUT) -> Any:
        return self.call("PUT", path, body=body, timeout=timeout)

    def patch(self, path: str, body: Any = None, timeout: float = REQUEST_TIMEOUT) -> Any:
        return self.call("PATCH", path, body=body, timeout=timeout)

    def delete(self, path: str, timeout: float = REQUEST_TIMEOUT) -> Any:
        return self.call("DELETE", path, timeout=timeout)

    def stream(self, path: str, last_event_id: str | None = None) -> HTTPResponse:
        """An open ``text/event-stream`` response to read lines from (after ``last_event_id``); caller closes it."""
        headers = {"Accept": "text/event-stream"}
        if last_event_id:
            headers["Last-Event-ID"] = last_event_id
        return self._open("GET", path, None, None, STREAM_READ_TIMEOUT, headers)
