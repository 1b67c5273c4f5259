"""Certificates made outside Roost, for the Upload dialog and for expired entries (tests only)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def self_signed(common_name: str, *, days: int = 365, not_before_days: int = -1, ca: bool = False) -> tuple[bytes, str]:
    """A self-signed clientAuth certificate as PEM, and its thumbprint. ``days`` < 0 makes it expired; ``ca`` makes
    it what ``openssl req -x509`` makes by default (basicConstraints CA:TRUE)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    start = now + dt.timedelta(days=min(not_before_days, days - 1))
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(now + dt.timedelta(days=days))
        # A client certificate: clientAuth only, not a CA (unless asked for, as openssl's default).
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM), certificate.fingerprint(hashes.SHA1()).hex().upper()


def write_pem(path: Path, *pems: bytes) -> Path:
    path.write_bytes(b"".join(pems))
    return path


def server_pfx(ca_cert_pem: bytes, ca_key_pem: bytes, password: str) -> tuple[bytes, str]:
    """A replacement server certificate for localhost issued by the test server's own CA, as a protected .pfx."""
    import ipaddress

    from cryptography.hazmat.primitives.serialization import BestAvailableEncryption, pkcs12

    ca_cert = x509.load_pem_x509_certificate(ca_cert_pem)
    ca_key = serialization.load_pem_private_key(ca_key_pem, None)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost"),
                                 x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Roost replacement")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=90))
        # A server certificate that is also a client of other nodes: serverAuth and clientAuth, not a CA.
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                    x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                       critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                       critical=False)
        .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    pfx = pkcs12.serialize_key_and_certificates(b"server", key, certificate, [ca_cert],
                                                BestAvailableEncryption(password.encode()))
    return pfx, certificate.fingerprint(hashes.SHA1()).hex().upper()
