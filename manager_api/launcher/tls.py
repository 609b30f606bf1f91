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
        help="PEM CA bundle that signed --tls-cert: verifies Redis over TLS (the private Redis, TLS-only with "
        "--tls-cert, which needs it; a rediss:// --redis-url, else the system's CAs)",
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
    """The CA bundle the manager verifies its Redis with (--tls-ca), required for its private Redis, TLS-only with
    --tls-cert: a certificate signed by a CA cannot verify itself (raises UsageError)."""
    if tls and not args.redis_url and not args.tls_ca:
        raise UsageError(
            "--tls-cert makes the private Redis TLS-only: give --tls-ca, the CA bundle that signed --tls-cert "
            "(the certificate itself when self-signed), for the manager to verify it"
        )
    if args.tls_ca:
        path = Path(args.tls_ca).resolve()
        try:
            ssl.create_default_context(cafile=str(path))
        except OSError as exc:
            raise UsageError(f"cannot use --tls-ca {args.tls_ca}: {exc.strerror or exc}") from None
        return str(path)
    return None


def probe_context() -> ssl.SSLContext:
    """The launcher's health probe of its own listener: it knows whom it talks to (the socket it bound), and the
    certificate may name a host other than loopback, so it is not verified there (agents and the CLI do)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context
