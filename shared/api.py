"""HTTP paths and headers of the manager that agents and clients call."""

from __future__ import annotations

JOIN_PATH = "/api/agent/join"
"""POST: an agent announces itself with its join token and gets its Redis address and queue."""

HEALTH_PATH = "/healthz"
"""GET: liveness of the manager or of an agent's local endpoint; no token needed."""

AUTH_HEADER = "Authorization"
"""Both tokens travel as ``Authorization: Bearer <token>``."""


def bearer(token: str) -> dict[str, str]:
    """Headers that carry ``token``."""
    return {AUTH_HEADER: f"Bearer {token}"}
