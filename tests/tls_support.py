"""A certificate authority made at test time (cryptography's x509 builder), and server certificates it signs."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.e2e.harness import Manager


@dataclass(frozen=True)
class TlsFiles:
    """PEM files: the CA that signed the server certificate, the certificate and its key, and a CA that did not."""

    ca: Path
    cert: Path
    key: Path
    other_ca: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    path.write_bytes(pem)
    path.chmod(0o600)


def make_ca(directory: Path, name: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey, Path]:
    """A self-signed CA, its key, and the path of its certificate (``<name>.pem``)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(_name(name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    path = directory / f"{name}.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert, key, path


def make_tls_files(directory: Path) -> TlsFiles:
    """A CA, a server certificate it signs for 127.0.0.1/localhost, and another CA (for "wrong CA" tests)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_cert, ca_key, ca_path = make_ca(directory, "test-ca")
    _other, _other_key, other_path = make_ca(directory, "other-ca")
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("corral-manager"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    cert_path = directory / "server.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path = directory / "server.key"
    _write_key(key, key_path)
    return TlsFiles(ca=ca_path, cert=cert_path, key=key_path, other_ca=other_path)


@pytest.fixture()
def tls_files(tmp_path: Path) -> TlsFiles:
    """Fresh CA and server certificate for one test."""
    return make_tls_files(tmp_path / "tls")


class TlsManager(Manager):
    """The harness's manager serving HTTPS with ``tls``' certificate; its own calls verify it with the test CA."""

    def __init__(self, workdir: Path, env: dict[str, str], tls: TlsFiles, extra: list[str] | None = None) -> None:
        flags = ["--tls-cert", str(tls.cert), "--tls-key", str(tls.key), "--tls-ca", str(tls.ca)]
        super().__init__(workdir, env, [*flags, *(extra or [])])
        self.tls = tls
        self.url = f"https://127.0.0.1:{self.port}"

    def healthy(self) -> bool:
        if not self.alive():
            raise AssertionError(f"manager exited:\n{self.output()}")
        try:
            return requests.get(self.url + "/healthz", timeout=2, verify=str(self.tls.ca)).ok
        except requests.ConnectionError:
            return False

    def get(self, path: str, **kw: Any) -> requests.Response:
        # verify= given per call: a session's would lose to REQUESTS_CA_BUNDLE from the environment.
        return requests.get(self.url + path, **{"timeout": 10, "verify": str(self.tls.ca), **kw})

    def post(self, path: str, body: Any = None, **kw: Any) -> requests.Response:
        return requests.post(self.url + path, json=body, **{"timeout": 10, "verify": str(self.tls.ca), **kw})
