"""Certificates made by tests themselves: outside CAs, collections, renewed keys. Real X.509, nothing mocked."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from roost.pki.authority import CertificateAuthority

Key = ec.EllipticCurvePrivateKey


@dataclass
class Issued:
    certificate: x509.Certificate
    key: Key

    @property
    def der(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.DER)

    @property
    def thumbprint(self) -> str:
        return hashlib.sha1(self.der).hexdigest().upper()

    @property
    def b64(self) -> str:
        return base64.b64encode(self.der).decode()

    @property
    def pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def write_pem(self, path: Path) -> Path:
        """Certificate and unencrypted key in one file, as requests' ``cert`` takes it."""
        path.write_bytes(self.pem + self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        path.chmod(0o600)
        return path


def new_key() -> Key:
    return ec.generate_private_key(ec.SECP256R1())


def outside_ca(name: str = "Outside CA") -> CertificateAuthority:
    """A CA the server has never heard of (a company PKI, say)."""
    return CertificateAuthority.create(common_name=name)


def roost_ca(certs_dir: Path) -> CertificateAuthority:
    return CertificateAuthority.from_pem((certs_dir / "ca.crt").read_bytes(), (certs_dir / "ca.key").read_bytes())


def issue(authority: CertificateAuthority, name: str, key: Key | None = None, *, days: int = 30,
          not_before: dt.datetime | None = None) -> Issued:
    key = key or new_key()
    now = dt.datetime.now(dt.UTC)
    cert = authority.issue_client(name, key, not_after=now + dt.timedelta(days=days), not_before=not_before)
    return Issued(cert, key)


def server_auth_only(name: str) -> Issued:
    """Self-signed, Extended Key Usage serverAuth only: not valid for client authentication."""
    key = new_key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=True)
            .sign(key, hashes.SHA256()))
    return Issued(cert, key)


def collection_pfx(members: list[Issued], password: str | None, extra: list[x509.Certificate] | None = None) -> bytes:
    """One .pfx: the first member with its key, the other members (and ``extra`` chain certificates) as certs."""
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password.encode()) if password else serialization.NoEncryption())
    others = [m.certificate for m in members[1:]] + (extra or [])
    return pkcs12.serialize_key_and_certificates(b"collection", members[0].key, members[0].certificate,
                                                 others or None, encryption)


def pinning_hash(certificate: x509.Certificate) -> str:
    spki = certificate.public_key().public_bytes(serialization.Encoding.DER,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()
