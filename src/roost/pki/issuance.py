"""Issue a client certificate and build its package in one call that can run in a worker process.

RSA key generation (up to a second for RSA-4096) and the passphrase key derivation of a .pfx (a few ms) hold
the GIL; the server runs them in a process pool so that the event loop never stalls (bench/ figure 2).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cryptography import x509

from roost import clock
from roost.errors import BadRequestError
from roost.pki import packages
from roost.pki.authority import (
    CertificateAuthority,
    KeyType,
    generate_private_key,
    load_private_key_pem,
    self_signed_client,
)
from roost.pki.inspect import CertificateInfo, describe


@dataclass(frozen=True)
class PackageRequest:
    name: str
    key_type: KeyType
    password: str | None
    not_after: dt.datetime | None
    server_url: str | None
    ca_cert_pem: bytes
    ca_key_pem: bytes


@dataclass(frozen=True)
class IssuedPackage:
    zip_bytes: bytes
    info: CertificateInfo


def issue_package(request: PackageRequest, authority: CertificateAuthority | None = None) -> IssuedPackage:
    """Make a key, have the CA sign ``CN=<name>``, and package it. The private key leaves only in the zip."""
    ca = authority or CertificateAuthority.from_pem(request.ca_cert_pem, request.ca_key_pem)
    key = generate_private_key(request.key_type)
    cert = ca.issue_client(request.name, key, not_after=request.not_after)
    zip_bytes = packages.client_package(request.name, cert, key, request.password, ca.certificate,
                                        server_url=request.server_url)
    return IssuedPackage(zip_bytes, describe(cert))


def needs_worker(request: PackageRequest) -> bool:
    """Cheap work (an EC key, no passphrase: about a millisecond) runs inline; anything heavier in the pool."""
    return request.key_type != "EC-P256" or bool(request.password)


def offline_package(name: str, key_type: KeyType, password: str | None, *, lifetime_days: int,
                    ca_cert_pem: bytes | None = None, ca_key_pem: bytes | None = None,
                    ca_key_password: str | None = None) -> IssuedPackage:
    """``roost certs generate --offline``: a package made without a server, to be uploaded later.

    Self-signed when no CA is given, otherwise issued by the user's own CA (which the server must then trust:
    upload the package, whose .pfx carries the CA certificate as a chain entry, or list it in
    Security.TrustedIssuers).
    """
    key = generate_private_key(key_type)
    if ca_cert_pem is None:
        cert = self_signed_client(name, key, lifetime_days=lifetime_days)
        ca_certificate = None
    else:
        if ca_key_pem is None:
            raise BadRequestError("--ca-cert needs --ca-key (the CA's private key, PEM).")
        try:
            ca_cert = x509.load_pem_x509_certificate(ca_cert_pem)
        except ValueError as exc:
            raise BadRequestError("The --ca-cert file is not a PEM certificate.") from exc
        try:
            ca_key = load_private_key_pem(ca_key_pem, ca_key_password.encode() if ca_key_password else None)
        except (ValueError, TypeError) as exc:
            raise BadRequestError(
                "The --ca-key file is not a PEM private key, or its passphrase is missing or wrong."
            ) from exc
        if ca_key.public_key().public_numbers() != ca_cert.public_key().public_numbers():  # type: ignore[union-attr]
            raise BadRequestError("The --ca-key does not belong to the --ca-cert certificate.")
        authority = CertificateAuthority(ca_cert, ca_key)
        not_after = clock.now().replace(microsecond=0) + dt.timedelta(days=lifetime_days)
        cert = authority.issue_client(name, key, not_after=min(not_after, ca_cert.not_valid_after_utc))
        ca_certificate = ca_cert
    zip_bytes = packages.client_package(name, cert, key, password, ca_certificate)
    return IssuedPackage(zip_bytes, describe(cert))
