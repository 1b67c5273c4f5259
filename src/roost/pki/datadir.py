"""The certificates a server keeps in ``<data-dir>/certificates``: created on first start, reused afterwards.

    ca.crt, ca.key                  Roost's internal client-issuing CA (key mode 0600)
    server.crt, server.key          the generated server certificate (chain: server + CA)
    admin.client.zip                the initial client certificate package (.pfx, .crt, .key, README.txt)
    admin.client.pem                its certificate + unencrypted key, for curl and the RavenDB client (0600)
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from roost.errors import ConfigurationError
from roost.pki import packages
from roost.pki.authority import (
    CertificateAuthority,
    PrivateKey,
    default_server_hosts,
    generate_private_key,
    load_private_key_pem,
    write_private,
)
from roost.pki.inspect import CertificateInfo, describe, load_certificates

INITIAL_CLIENT_NAME = "admin.client"


@dataclass
class ServerCertificate:
    """The certificate the server presents, and files that ``ssl`` can load (key encrypted at rest)."""

    info: CertificateInfo
    chain: list[CertificateInfo]
    cert_path: Path
    key_path: Path
    key_password: str | None
    generated: bool  # made by Roost's CA (so "renew now" can make a new one)


def _write_public(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    path.chmod(0o644)


def ensure_directory(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigurationError(f"Cannot create the data directory '{path}': {exc.strerror}.") from exc
    if not os.access(path, os.W_OK):
        raise ConfigurationError(f"The data directory '{path}' is not writable.")


def load_or_create_authority(certs_dir: Path) -> CertificateAuthority:
    cert_path, key_path = certs_dir / "ca.crt", certs_dir / "ca.key"
    if cert_path.exists() and key_path.exists():
        return CertificateAuthority.from_pem(cert_path.read_bytes(), key_path.read_bytes())
    authority = CertificateAuthority.create()
    write_private(key_path, authority.private_key_pem())
    _write_public(cert_path, authority.certificate_pem())
    return authority


def generated_server_certificate(
    certs_dir: Path, authority: CertificateAuthority, *, renew: bool = False
) -> ServerCertificate:
    cert_path, key_path = certs_dir / "server.crt", certs_dir / "server.key"
    if renew or not (cert_path.exists() and key_path.exists()):
        key = generate_private_key("EC-P256")
        cert = authority.issue_server(key, default_server_hosts())
        write_private(key_path, key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        _write_public(cert_path, packages.certificate_pem(cert) + authority.certificate_pem())
    chain = load_certificates(cert_path.read_bytes())
    return ServerCertificate(chain[0], chain, cert_path, key_path, None, generated=True)


def install_supplied_certificate(certs_dir: Path, pfx: bytes, password: str | None, source: str,
                                 *, now: dt.datetime | None = None) -> ServerCertificate:
    """Load a server .pfx (with its private key) and write ssl-loadable files; the key stays encrypted on disk."""
    try:
        key, cert, extra = pkcs12.load_key_and_certificates(pfx, password.encode() if password else None)
    except ValueError as exc:
        raise ConfigurationError(
            f"Unable to load the provided certificate from {source}: not a .pfx, or the password is wrong."
        ) from exc
    if cert is None or key is None:
        raise ConfigurationError(f"The certificate from {source} must hold a certificate and its private key.")
    info = describe(cert)
    if info.not_after < (now or dt.datetime.now(dt.UTC)):
        raise ConfigurationError(
            f"The provided certificate '{info.subject}' from {source} is expired! It expired on "
            f"{info.not_after:%Y-%m-%d}. Supply a valid certificate."
        )
    key_password = secrets.token_urlsafe(24)
    stem = f"server.{info.thumbprint[:12].lower()}"
    cert_path, key_path = certs_dir / f"{stem}.crt", certs_dir / f"{stem}.key"
    chain = [cert, *extra]
    _write_public(cert_path, b"".join(packages.certificate_pem(c) for c in chain))
    write_private(key_path, key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(key_password.encode())))
    return ServerCertificate(info, [describe(c) for c in chain], cert_path, key_path, key_password, generated=False)


def supplied_server_certificate(certs_dir: Path, path: Path, password: str | None) -> ServerCertificate:
    return install_supplied_certificate(certs_dir, path.read_bytes(), password, f"'{path}'")


@dataclass
class InitialClient:
    certificate: x509.Certificate
    info: CertificateInfo
    pem_path: Path
    zip_path: Path


def create_initial_client(certs_dir: Path, authority: CertificateAuthority, server_url: str) -> InitialClient:
    key: PrivateKey = generate_private_key("EC-P256")
    cert = authority.issue_client(INITIAL_CLIENT_NAME, key)
    zip_path, pem_path = certs_dir / f"{INITIAL_CLIENT_NAME}.zip", certs_dir / f"{INITIAL_CLIENT_NAME}.pem"
    write_private(zip_path, packages.client_package(INITIAL_CLIENT_NAME, cert, key, None, authority.certificate,
                                                    server_url=server_url))
    write_private(pem_path, packages.pem_bundle(cert, key))
    return InitialClient(cert, describe(cert), pem_path, zip_path)


def existing_initial_client(certs_dir: Path) -> InitialClient | None:
    zip_path, pem_path = certs_dir / f"{INITIAL_CLIENT_NAME}.zip", certs_dir / f"{INITIAL_CLIENT_NAME}.pem"
    if not pem_path.exists():
        return None
    cert = x509.load_pem_x509_certificate(pem_path.read_bytes())
    return InitialClient(cert, describe(cert), pem_path, zip_path)


def read_key_pem(path: Path) -> PrivateKey:
    return load_private_key_pem(path.read_bytes())
