"""HTTP paths and headers of the manager that agents and clients call."""

from __future__ import annotations

JOIN_PATH = "/api/agent/join"
"""POST: an agent announces itself with its join token and gets its Redis address and queue."""

HEALTH_PATH = "/healthz"
"""GET: liveness of the manager or of an agent's local endpoint; no token needed."""

METRICS_PATH = "/metrics"
"""GET: Prometheus metrics, of the manager (the API token when one is set) and of an agent's status port."""

API_PREFIXES = ("/api/", "/deployments/")
"""Path prefixes of the JSON API (the manual's deployments live outside /api): a bearer token, JSON errors.
Every other path but HEALTH_PATH is the web console's (manager_api/console), which signs its users in
with a session of its own."""


OPENAPI_PATH = "/api/openapi.json"
"""GET: the OpenAPI 3.1 document of the API; no token needed (it describes the API, holds no data)."""

DOCS_PATH = "/api/docs"
"""GET: that document rendered for a browser (its files under DOCS_PATH/static/); no token needed."""


def is_api_path(path: str) -> bool:
    return path == HEALTH_PATH or path.startswith(API_PREFIXES)


def is_public_path(path: str) -> bool:
    """An API path that answers without a token: liveness, and the API's own description."""
    return path in (HEALTH_PATH, OPENAPI_PATH, DOCS_PATH) or path.startswith(f"{DOCS_PATH}/")


AUTH_HEADER = "Authorization"
"""Both tokens travel as ``Authorization: Bearer <token>``."""


def bearer(token: str) -> dict[str, str]:
    """Headers that carry ``token``."""
    return {AUTH_HEADER: f"Bearer {token}"}
