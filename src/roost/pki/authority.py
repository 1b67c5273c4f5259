"""Roost's internal certificate authority: it issues client certificates and Roost's own server certificates.

Unlike RavenDB, which signs client certificates with the server certificate's key, Roost keeps a separate CA
(``CA:TRUE, pathlen:0``). One trust anchor then covers every generated certificate, a server certificate from
any PKI works (Let's Encrypt certificates are no CA), and renewing the server certificate orphans no client.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import ipaddress
import os
import socket
from dataclasses import dataclass
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from roost import clock
from roost.errors import BadRequestError

KeyType = Literal["EC-P256", "RSA-2048", "RSA-4096"]
KEY_TYPES: tuple[KeyType, ...] = ("EC-P256", "RSA-2048", "RSA-4096")
PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey

# RavenDB backdates client certificates by 7 days so that clocks running behind still accept them.
BACKDATE = dt.timedelta(days=7)
DEFAULT_CLIENT_LIFETIME_DAYS = 5 * 365
DEFAULT_SERVER_LIFETIME_DAYS = 397  # the CA/Browser Forum maximum for a TLS server certificate


def generate_private_key(key_type: KeyType) -> PrivateKey:
    if key_type == "EC-P256":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == "RSA-2048":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if key_type == "RSA-4096":
        return rsa.generate_private_key(public_exponent=65537, key_size=4096)
    raise BadRequestError(f"Unknown KeyType '{key_type}'. Use one of: {', '.join(KEY_TYPES)}.")


def generate_private_key_pem(key_type: KeyType) -> bytes:
    """Process-pool entry point: RSA generation takes up to a second and must not stall the event loop.

    Keys cross the process boundary as unencrypted PKCS#8 in memory only; they are never written anywhere.
    """
    key = generate_private_key(key_type)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def load_private_key_pem(pem: bytes, password: bytes | None = None) -> PrivateKey:
    key = serialization.load_pem_private_key(pem, password)
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise BadRequestError("Only EC and RSA private keys are supported.")
    return key


def _signature_hash(key: CertificateIssuerPrivateKeyTypes) -> hashes.SHA256 | hashes.SHA384:
    return hashes.SHA384() if isinstance(key, rsa.RSAPrivateKey) and key.key_size > 2048 else hashes.SHA256()


def _now() -> dt.datetime:
    return clock.now().replace(microsecond=0)


def _end_entity_key_usage(key: PrivateKey | ec.EllipticCurvePublicKey | rsa.RSAPublicKey) -> x509.KeyUsage:
    """digitalSignature signs the TLS handshake; keyEncipherment only matters for RSA key transport (TLS 1.2)."""
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey),
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


@dataclass(frozen=True)
class IssuedCertificate:
    certificate: x509.Certificate
    private_key: PrivateKey


class CertificateAuthority:
    """The internal client-issuing CA. Its private key stays in the data directory (mode 0600)."""

    def __init__(self, certificate: x509.Certificate, private_key: PrivateKey) -> None:
        self.certificate = certificate
        self.private_key = private_key

    @classmethod
    def create(cls, common_name: str = "Roost Internal CA", lifetime_days: int = 20 * 365) -> CertificateAuthority:
        # P-256 (128-bit security) signs in ~0.1 ms; every issued certificate costs one signature.
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Roost"),
            ]
        )
        now = _now()
        ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=lifetime_days))
            # A CA that may sign end-entity certificates only (pathlen 0): no intermediate can hang off it.
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            # keyCertSign to issue certificates, cRLSign so that a CRL could be published later; nothing else.
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(ski, critical=False)
            .sign(key, hashes.SHA256())
        )
        return cls(cert, key)

    @classmethod
    def from_pem(cls, cert_pem: bytes, key_pem: bytes) -> CertificateAuthority:
        return cls(x509.load_pem_x509_certificate(cert_pem), load_private_key_pem(key_pem))

    def certificate_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def certificate_der(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.DER)

    def private_key_pem(self) -> bytes:
        return self.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    def derived_secret(self, label: str) -> str:
        """A secret only holders of this CA's key can compute (HMAC-SHA256 of the key under ``label``): the nodes of
        a cluster sharing the CA directory agree on it without ever storing it."""
        key = self.private_key.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        return hmac.new(key, label.encode(), hashlib.sha256).hexdigest()

    def _builder(self, subject: x509.Name, public_key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey,
                 not_before: dt.datetime, not_after: dt.datetime) -> x509.CertificateBuilder:
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.certificate.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            # An end-entity certificate: it can never act as a CA.
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.private_key.public_key()), critical=False
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        )

    def issue_client(
        self,
        name: str,
        private_key: PrivateKey,
        *,
        not_after: dt.datetime | None = None,
        not_before: dt.datetime | None = None,
    ) -> x509.Certificate:
        """A client certificate as RavenDB makes them (``CN=<Name>``, valid from 7 days ago) but clientAuth only."""
        return self.issue_client_for(name, private_key.public_key(), not_after=not_after, not_before=not_before)

    def issue_client_for(
        self,
        name: str,
        public_key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey,
        *,
        not_after: dt.datetime | None = None,
        not_before: dt.datetime | None = None,
    ) -> x509.Certificate:
        """The same certificate for a key the server never sees the private half of (a CSR: pki/csr.py)."""
        now = _now()
        not_before = not_before or now - BACKDATE
        not_after = not_after or now + dt.timedelta(days=DEFAULT_CLIENT_LIFETIME_DAYS)
        builder = self._builder(
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]), public_key, not_before, not_after
        )
        builder = builder.add_extension(_end_entity_key_usage(public_key), critical=True).add_extension(
            # clientAuth only: a leaked client certificate cannot impersonate a server.
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=True,
        )
        return builder.sign(self.private_key, _signature_hash(self.private_key))

    def issue_server(
        self, private_key: PrivateKey, hosts: list[str], *, lifetime_days: int = DEFAULT_SERVER_LIFETIME_DAYS
    ) -> x509.Certificate:
        """A server certificate for ``hosts`` (DNS names and IP addresses in the SAN)."""
        now = _now()
        sans: list[x509.GeneralName] = []
        for host in hosts:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                sans.append(x509.DNSName(host))
        builder = self._builder(
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0] if hosts else "localhost"),
                       x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Roost")]),
            private_key.public_key(),
            now - dt.timedelta(days=1),
            now + dt.timedelta(days=lifetime_days),
        )
        builder = (
            builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(_end_entity_key_usage(private_key), critical=True)
            # serverAuth to serve HTTPS; clientAuth because cluster nodes are also clients of each other.
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                critical=False,
            )
        )
        return builder.sign(self.private_key, _signature_hash(self.private_key))


def default_server_hosts() -> list[str]:
    hosts = ["localhost", "127.0.0.1", "::1"]
    hostname = socket.gethostname()
    if hostname and hostname not in hosts:
        hosts.append(hostname)
    fqdn = socket.getfqdn()
    if fqdn and fqdn not in hosts and fqdn != "localhost":
        hosts.append(fqdn)
    return hosts


def self_signed_client(name: str, private_key: PrivateKey, *, lifetime_days: int) -> x509.Certificate:
    """For ``roost certs generate --offline`` without a CA of one's own: a self-signed clientAuth certificate.

    The issuer name and signing key are the certificate's own, so the same builder as for issued ones applies.
    """
    now = _now()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    # Only the subject of this throwaway certificate is used: it becomes the issuer name.
    placeholder = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(private_key.public_key())
        .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
        .sign(private_key, _signature_hash(private_key))
    )
    return CertificateAuthority(placeholder, private_key).issue_client(
        name, private_key, not_after=now + dt.timedelta(days=lifetime_days)
    )


def write_private(path: os.PathLike[str] | str, data: bytes) -> None:
    """Write a file that holds key material: created with mode 0600 from the start, never world-readable."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.chmod(path, 0o600)
