"""Issue a client certificate and build its package in one call that can run in a worker process.

RSA key generation (up to a second for RSA-4096) and the passphrase key derivation of a .pfx (a few ms) hold
the GIL; the server runs them in a process pool so that the event loop never stalls (bench/ figure 2).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from roost.pki import packages
from roost.pki.authority import CertificateAuthority, KeyType, generate_private_key
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
