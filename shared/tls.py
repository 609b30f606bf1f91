"""TLS on the client side, shared by the agent and the CLI: the context that verifies the manager, the
Redis keyword arguments of a ``rediss://`` URL, and the one line a certificate failure is reported with."""

from __future__ import annotations

import os
import ssl
from typing import Any

from redis import Redis

CA_BUNDLE_ENV = "CORRAL_CA_BUNDLE"
"""Environment variable naming the CA bundle the manager's (and Redis') certificate is verified against."""


def ca_bundle(given: str | os.PathLike[str] | None) -> str | None:
    """The flag's CA bundle, else CORRAL_CA_BUNDLE's, else None (the system's trust store)."""
    value = str(given) if given else os.environ.get(CA_BUNDLE_ENV, "")
    return value.strip() or None


def client_context(cafile: str | None) -> ssl.SSLContext:
    """A verifying client context: the system's CAs, or only ``cafile``'s when given (raises OSError/SSLError
    when the file cannot be read)."""
    return ssl.create_default_context(cafile=cafile)


def is_verify_failure(exc: BaseException) -> bool:
    """Whether ``exc`` (or what it wraps, as urllib's URLError does) is a certificate the client refused."""
    reason = getattr(exc, "reason", None)
    return isinstance(exc, ssl.SSLCertVerificationError) or isinstance(reason, ssl.SSLCertVerificationError)


def verify_failure_message(url: str, flag: str = "--ca-bundle") -> str:
    """The one line a refused certificate is reported with."""
    return f"certificate verify failed for {url}: pass {flag} (or {CA_BUNDLE_ENV}) naming the CA that signed it"


def redis_tls_kwargs(url: str, cafile: str | None) -> dict[str, Any]:
    """What redis-py needs beside a ``rediss://`` URL to verify the server against ``cafile``; {} otherwise."""
    if not url.startswith("rediss://") or not cafile:
        return {}
    return {"ssl_ca_certs": cafile, "ssl_cert_reqs": "required"}


def redis_from_url(url: str, cafile: str | None, **kwargs: Any) -> Redis:
    """A Redis client of ``url``; a ``rediss://`` one verifies the server against ``cafile`` (else the system's
    CAs, redis-py's default)."""
    return Redis.from_url(url, **redis_tls_kwargs(url, cafile), **kwargs)
