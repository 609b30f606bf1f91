"""The manager's TLS flags (--tls-cert/--tls-key): their check before anything starts, and what they change in
the launcher (gunicorn's certfile/keyfile, the https self-probe)."""

from __future__ import annotations

import argparse
import ssl
from pathlib import Path

from manager_api.launcher.arguments import UsageError


def add_tls_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tls-cert", metavar="FILE", help="serve HTTPS with this PEM certificate chain (with --tls-key)"
    )
    parser.add_argument("--tls-key", metavar="FILE", help="the PEM private key of --tls-cert")
    parser.add_argument(
        "--tls-ca",
        metavar="FILE",
        help="PEM CA bundle verifying Redis over TLS (a rediss:// --redis-url; the private Redis, which is TLS-only "
        "with --tls-cert); default: the system's CAs, and --tls-cert's own file for the private Redis",
    )


def checked_tls(args: argparse.Namespace) -> tuple[str, str] | None:
    """The absolute (cert, key) paths when TLS is on, None for plain HTTP (raises UsageError).

    The pair is loaded here once, so that a missing, unreadable or mismatched file stops the manager with one
    line naming it before it starts a Redis or gunicorn (whose workers would each die with a traceback)."""
    cert, key = getattr(args, "tls_cert", None), getattr(args, "tls_key", None)
    if not cert and not key:
        return None
    if not cert or not key:
        raise UsageError("--tls-cert and --tls-key go together: give both, or neither for plain HTTP")
    cert_path, key_path = str(Path(cert).resolve()), str(Path(key).resolve())
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert_path, key_path)
    except OSError as exc:  # ssl.SSLError is an OSError
        what = exc.strerror or getattr(exc, "reason", None) or str(exc)
        raise UsageError(f"cannot use --tls-cert {cert} / --tls-key {key}: {what}") from None
    return cert_path, key_path


def redis_ca(args: argparse.Namespace, tls: tuple[str, str] | None) -> str | None:
    """The CA bundle the manager verifies its Redis with: --tls-ca, else (for its private TLS Redis) --tls-cert's
    file, which verifies a self-signed certificate or a chain that ends in its root (raises UsageError)."""
    if args.tls_ca:
        path = Path(args.tls_ca).resolve()
        try:
            ssl.create_default_context(cafile=str(path))
        except OSError as exc:
            raise UsageError(f"cannot use --tls-ca {args.tls_ca}: {exc.strerror or exc}") from None
        return str(path)
    return tls[0] if tls and not args.redis_url else None


def probe_context() -> ssl.SSLContext:
    """The launcher's health probe of its own listener: it knows whom it talks to (the socket it bound), and the
    certificate may name a host other than loopback, so it is not verified there (agents and the CLI do)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context
