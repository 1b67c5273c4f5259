"""The certificates a server keeps in ``<data-dir>/certificates``: created on first start, reused afterwards.

    ca.crt, ca.key                  Roost's internal client-issuing CA (key mode 0600)
    server.crt, server.key          the generated server certificate (chain: server + CA)
    active-server.json              which certificate replace-cluster-cert installed (survives a restart)
    server.<thumbprint>.crt/.key    that certificate and its key (0600), written before the pointer above
    admin.client.zip                the initial client certificate package (.pfx, .crt, .key, README.txt)
    admin.client.pem                its certificate + unencrypted key, for curl and the RavenDB client (0600)
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID

from roost import clock
from roost.errors import BadRequestError, ConfigurationError, RoostError
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

CA_CERTIFICATE_FILE = "ca.crt"  # what clients verify the server with
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
    # Public content, private file all the same: everything under the data directory is the owner's alone
    # (the directory is 0700 anyway; 0644 inside it only invites copying the habit elsewhere).
    write_private(path, data)


def _replace_file(path: Path, data: bytes, *, private: bool) -> None:
    """Write beside ``path`` and rename over it: a crash leaves the old file or the new one, never half of one."""
    temporary = path.with_name(f".{path.name}.tmp")
    if private:
        write_private(temporary, data)
    else:
        _write_public(temporary, data)
    os.replace(temporary, path)


def ensure_directory(path: Path) -> None:
    """Create the data directory, private (0700), and make every file this process creates from now on private.

    The umask is the one rule that reaches files Roost does not open itself: SQLite's ``-wal`` and ``-shm``
    (0644 under the usual umask 022, holding documents and TOTP keys), backup staging, ``server.url``.
    """
    os.umask(0o077)
    try:
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(0o700)
    except OSError as exc:
        raise ConfigurationError(f"Cannot create the data directory '{path}': {exc.strerror}.") from exc
    if not os.access(path, os.W_OK):
        raise ConfigurationError(f"The data directory '{path}' is not writable.")
    _tighten_known_files(path)


# What earlier versions of Roost created with group/other bits (0644 files); tightened at every start.
_KNOWN_FILES = ("roost.db", "roost.db-wal", "roost.db-shm", "audit.log", "server.url", "certificates")


def _tighten_known_files(data_dir: Path) -> None:
    for name in _KNOWN_FILES:
        top = data_dir / name
        if top.is_symlink() or not top.exists():
            continue
        for item in [top, *(top.iterdir() if top.is_dir() else ())]:
            if not item.is_symlink() and item.stat().st_mode & 0o077:
                item.chmod(item.stat().st_mode & 0o700)


LOCK_FILE = ".bootstrap.lock"


@contextmanager
def bootstrap_lock(directory: Path) -> Iterator[None]:
    """One process at a time creates what ``directory`` lacks (a CA, a server certificate): nodes and workers that
    start together on one (shared) directory then all load what the first one wrote, instead of each writing its
    own. An exclusive ``flock`` on a file in the directory: released by the kernel if the holder dies. (On NFS,
    flock needs a server with lock support (NFSv4); docs/cluster.md.)"""
    fd = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def load_or_create_authority(certs_dir: Path) -> CertificateAuthority:
    cert_path, key_path = certs_dir / CA_CERTIFICATE_FILE, certs_dir / "ca.key"
    with bootstrap_lock(certs_dir):
        if cert_path.exists() and key_path.exists():
            return CertificateAuthority.from_pem(cert_path.read_bytes(), key_path.read_bytes())
        authority = CertificateAuthority.create()
        # Renamed into place, certificate last: a process that dies half-way leaves no pair that does not match.
        _replace_file(key_path, authority.private_key_pem(), private=True)
        _replace_file(cert_path, authority.certificate_pem(), private=False)
        return authority


def publish_authority_certificate(certs_dir: Path, authority: CertificateAuthority) -> None:
    """Keep a copy of a shared CA's certificate (public) where clients of this node look for ``ca.crt``."""
    _write_public(certs_dir / CA_CERTIFICATE_FILE, authority.certificate_pem())


def generated_server_certificate(
    certs_dir: Path, authority: CertificateAuthority, *, renew: bool = False
) -> ServerCertificate:
    """Roost's own server certificate; ``renew`` makes a new key and certificate now (``refresh``)."""
    cert_path, key_path = certs_dir / "server.crt", certs_dir / "server.key"
    with bootstrap_lock(certs_dir):
        if renew or not (cert_path.exists() and key_path.exists()):
            _generate_server_certificate(cert_path, key_path, authority)
    chain = load_certificates(cert_path.read_bytes())
    return ServerCertificate(chain[0], chain, cert_path, key_path, None, generated=True)


def _generate_server_certificate(cert_path: Path, key_path: Path, authority: CertificateAuthority) -> None:
    key = generate_private_key("EC-P256")
    cert = authority.issue_server(key, default_server_hosts())
    # Key first: a crash between the two renames leaves a new key with the old certificate, which
    # load_cert_chain refuses loudly, rather than a certificate whose key is gone.
    _replace_file(key_path, key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
        private=True)
    _replace_file(cert_path, packages.certificate_pem(cert) + authority.certificate_pem(), private=False)


def _load_server_pfx(
    pfx: bytes, password: str | None, source: str, error: type[RoostError], now: dt.datetime | None
) -> tuple[PrivateKey, x509.Certificate, list[x509.Certificate]]:
    """A server .pfx: certificate, its private key, valid now, usable to serve TLS (RavenDB's checks)."""
    try:
        key, cert, extra = pkcs12.load_key_and_certificates(pfx, password.encode() if password else None)
    except ValueError as exc:
        raise error(
            f"Unable to load the provided certificate from {source}: it is not a .pfx file, or its password is "
            "wrong."
        ) from exc
    if cert is None or key is None:
        raise error(f"The certificate from {source} must hold a certificate and its private key.")
    return _checked_server_certificate(key, cert, list(extra), source, error, now)


def _checked_server_certificate(key: Any, cert: x509.Certificate, extra: list[x509.Certificate], source: str,
                                error: type[RoostError], now: dt.datetime | None,
                                ) -> tuple[PrivateKey, x509.Certificate, list[x509.Certificate]]:
    """RavenDB's checks of a server certificate, whatever file it came in: its key, valid now, serverAuth."""
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise error(f"The certificate from {source} has a {type(key).__name__}; use an RSA or EC key.")
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(serialization.Encoding.DER, spki) != cert.public_key().public_bytes(
            serialization.Encoding.DER, spki):
        # Other tools can write such a file; ssl would refuse it only when the new context is built.
        raise error(f"The private key in the certificate from {source} does not belong to its certificate.")
    info = describe(cert)
    if info.not_after < (now or clock.now()):
        raise error(
            f"The provided certificate '{info.subject}' from {source} is expired! It expired on "
            f"{info.not_after:%Y-%m-%d}. Supply a valid certificate."
        )
    try:
        ekus = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        ekus = None  # RFC 5280 4.2.1.12: no extension, any purpose
    if ekus is not None and ExtendedKeyUsageOID.SERVER_AUTH not in ekus:
        raise error(
            f"The certificate '{info.subject}' from {source} is not valid for server authentication: its Extended "
            "Key Usage does not include serverAuth (1.3.6.1.5.5.7.3.1)."
        )
    return key, cert, list(extra)


def sealed_server_pfx(pfx: bytes, password: str | None, secret: str, *,
                      now: dt.datetime | None = None) -> tuple[bytes, CertificateInfo]:
    """Check a new server .pfx (as ``install_replacement`` does) and re-encrypt it under ``secret``, for the nodes of
    a cluster to install (roost.cluster.replacement); the upload's own password goes no further."""
    key, cert, extra = _load_server_pfx(pfx, password, "the request", BadRequestError, now)
    return packages.pfx_bytes("server", cert, key, secret, extra), describe(cert)


def install_supplied_certificate(certs_dir: Path, pfx: bytes, password: str | None, source: str,
                                 *, now: dt.datetime | None = None) -> ServerCertificate:
    """Load a server .pfx (with its private key) and write ssl-loadable files; the key stays encrypted on disk."""
    key, cert, extra = _load_server_pfx(pfx, password, source, ConfigurationError, now)
    return _write_supplied(certs_dir, key, cert, extra)


def _write_supplied(certs_dir: Path, key: PrivateKey, cert: x509.Certificate,
                    extra: list[x509.Certificate]) -> ServerCertificate:
    info = describe(cert)
    key_password = secrets.token_urlsafe(24)
    stem = f"server.{info.thumbprint[:12].lower()}"
    cert_path, key_path = certs_dir / f"{stem}.crt", certs_dir / f"{stem}.key"
    chain = [cert, *extra]
    _write_public(cert_path, b"".join(packages.certificate_pem(c) for c in chain))
    write_private(key_path, key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(key_password.encode())))
    return ServerCertificate(info, [describe(c) for c in chain], cert_path, key_path, key_password, generated=False)


def supplied_server_certificate(certs_dir: Path, path: Path, password: str | None, *,
                                now: dt.datetime | None = None) -> ServerCertificate:
    """Security.Certificate.Path: a .pfx file, or a directory holding ``tls.crt`` and ``tls.key`` (PEM, as
    Kubernetes and cert-manager write a TLS secret); checked, then written where ``ssl`` loads it."""
    if path.is_dir():
        key, cert, extra = load_pem_pair(path, password, ConfigurationError, now)
        return _write_supplied(certs_dir, key, cert, extra)
    return install_supplied_certificate(certs_dir, path.read_bytes(), password, f"'{path}'", now=now)


PEM_CERTIFICATE_FILE = "tls.crt"
PEM_KEY_FILE = "tls.key"


def load_pem_pair(directory: Path, password: str | None, error: type[RoostError], now: dt.datetime | None,
                  ) -> tuple[PrivateKey, x509.Certificate, list[x509.Certificate]]:
    """``tls.crt`` (the certificate, then its chain) and ``tls.key`` from ``directory``, checked."""
    source = f"'{directory}' ({PEM_CERTIFICATE_FILE} and {PEM_KEY_FILE})"
    try:
        chain = x509.load_pem_x509_certificates((directory / PEM_CERTIFICATE_FILE).read_bytes())
        key = serialization.load_pem_private_key((directory / PEM_KEY_FILE).read_bytes(),
                                                 password.encode() if password else None)
    except (OSError, ValueError, TypeError) as exc:
        raise error(f"Unable to load the server certificate from {source}: {exc}") from None
    return _checked_server_certificate(key, chain[0], chain[1:], source, error, now)


# A replacement installed over the API (replace-cluster-cert) ----------------------------------------------------

ACTIVE_POINTER = "active-server.json"


def install_replacement(certs_dir: Path, pfx: bytes, password: str | None, *, configured_thumbprint: str,
                        now: dt.datetime | None = None) -> ServerCertificate:
    """Check a new server .pfx and write it where the next start finds it; returns it ready for ``ssl``.

    The key is written unencrypted with mode 0600, as Roost's own ``server.key``: the passphrase of the upload is
    never stored, and a restart must be able to load the key without anyone typing it. The pointer file is
    written last, so a crash midway leaves the previous certificate in charge. ``configured_thumbprint`` is the
    certificate the settings name (or Roost's generated one): if an administrator later changes that, the
    settings win over this replacement at the next start.
    """
    key, cert, extra = _load_server_pfx(pfx, password, "the request", BadRequestError, now)
    info = describe(cert)
    stem = f"server.{info.thumbprint.lower()}"
    cert_path, key_path = certs_dir / f"{stem}.crt", certs_dir / f"{stem}.key"
    chain = [cert, *extra]
    _replace_file(key_path, key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()), private=True)
    _replace_file(cert_path, b"".join(packages.certificate_pem(c) for c in chain), private=False)
    pointer = {"Thumbprint": info.thumbprint, "Certificate": cert_path.name, "Key": key_path.name,
               "ConfiguredThumbprint": configured_thumbprint,
               "InstalledAt": (now or clock.now()).isoformat()}
    _replace_file(certs_dir / ACTIVE_POINTER, json.dumps(pointer, indent=2).encode(), private=False)
    _remove_replaced_keys(certs_dir, keep=key_path)
    return ServerCertificate(info, [describe(c) for c in chain], cert_path, key_path, None, generated=False)


def forget_replacement(certs_dir: Path) -> None:
    """Roost's generated certificate is in charge again (after ``refresh``)."""
    (certs_dir / ACTIVE_POINTER).unlink(missing_ok=True)
    _remove_replaced_keys(certs_dir, keep=None)


def _remove_replaced_keys(certs_dir: Path, keep: Path | None) -> None:
    """Private keys of earlier replacements are never presented again: do not leave them lying around.

    Their certificates (public) stay, and so does their trust as "Old Server Certificate - can delete".
    """
    for path in certs_dir.glob("server.*.key"):
        stem = path.name.removeprefix("server.").removesuffix(".key")
        if len(stem) == 40 and all(c in "0123456789abcdef" for c in stem) and path != keep:
            path.unlink(missing_ok=True)


@dataclass
class Replacement:
    certificate: ServerCertificate
    configured_thumbprint: str


def installed_replacement(certs_dir: Path) -> Replacement | None:
    """The certificate replace-cluster-cert installed, if any. A damaged pointer is a configuration error."""
    pointer_path = certs_dir / ACTIVE_POINTER
    if not pointer_path.exists():
        return None
    try:
        pointer = json.loads(pointer_path.read_text())
        cert_path, key_path = certs_dir / pointer["Certificate"], certs_dir / pointer["Key"]
        chain = load_certificates(cert_path.read_bytes())
    except (OSError, ValueError, KeyError, RoostError) as exc:
        raise ConfigurationError(
            f"{pointer_path} names a server certificate that cannot be read ({exc}). Delete {pointer_path} to "
            "start with the configured certificate, then replace it again."
        ) from exc
    return Replacement(ServerCertificate(chain[0], chain, cert_path, key_path, None, generated=False),
                       str(pointer.get("ConfiguredThumbprint", "")))


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
