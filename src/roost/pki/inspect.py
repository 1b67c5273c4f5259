"""Load certificates from PFX, PEM or DER (one or a collection) and read what Roost needs from them."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from roost.errors import BadRequestError
from roost.types import Thumbprint


class CertificateLoadError(BadRequestError):
    """The bytes are not a certificate we can read, or the passphrase is wrong."""


def thumbprint_of(der: bytes) -> Thumbprint:
    """SHA-1 of the DER, uppercase hex: .NET's X509Certificate2.Thumbprint, RavenDB's registry key."""
    return Thumbprint(hashlib.sha1(der).hexdigest().upper())


@dataclass(frozen=True, slots=True)
class CertificateInfo:
    """The public facts of one X.509 certificate."""

    der: bytes
    thumbprint: Thumbprint
    subject: str
    issuer: str
    common_name: str
    not_before: dt.datetime
    not_after: dt.datetime
    pinning_hash: str
    is_ca: bool
    client_auth: bool
    key_description: str

    @property
    def self_issued(self) -> bool:
        return self.subject == self.issuer

    @property
    def pem(self) -> str:
        body = base64.encodebytes(self.der).decode().replace("\n", "")
        lines = [body[i : i + 64] for i in range(0, len(body), 64)]
        return "-----BEGIN CERTIFICATE-----\n" + "\n".join(lines) + "\n-----END CERTIFICATE-----\n"


def describe(cert: x509.Certificate) -> CertificateInfo:
    der = cert.public_bytes(serialization.Encoding.DER)
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    try:
        is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    try:
        ekus = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        # RFC 5280 4.2.1.12: without the extension a certificate may be used for any purpose.
        client_auth = ExtendedKeyUsageOID.CLIENT_AUTH in ekus or ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE in ekus
    except x509.ExtensionNotFound:
        client_auth = True
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    common_name = str(names[0].value) if names else cert.subject.rfc4514_string()
    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        key_description = f"RSA-{key.key_size}"
    elif isinstance(key, ec.EllipticCurvePublicKey):
        key_description = f"EC-{key.curve.name}"
    else:
        key_description = type(key).__name__
    return CertificateInfo(
        der=der,
        thumbprint=thumbprint_of(der),
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        common_name=common_name,
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        pinning_hash=base64.b64encode(hashlib.sha256(spki).digest()).decode(),
        is_ca=is_ca,
        client_auth=client_auth,
        key_description=key_description,
    )


def describe_der(der: bytes) -> CertificateInfo:
    try:
        return describe(x509.load_der_x509_certificate(der))
    except ValueError as exc:
        raise CertificateLoadError("Unable to load the provided certificate.") from exc


def load_certificates(blob: bytes, password: str | None = None) -> list[CertificateInfo]:
    """Read every certificate in ``blob``: PEM text (one or many), DER, or a PKCS#12 (.pfx) file.

    Private keys inside a .pfx are dropped here: Roost never keeps a client's private key.
    """
    stripped = blob.lstrip()
    if stripped.startswith(b"-----BEGIN"):
        try:
            certs = x509.load_pem_x509_certificates(stripped)
        except ValueError as exc:
            raise CertificateLoadError("Unable to load the provided certificate: the PEM text is not valid.") from exc
        return [describe(c) for c in certs]
    try:
        return [describe(x509.load_der_x509_certificate(blob))]
    except ValueError:
        pass
    try:
        key_and_certs = pkcs12.load_pkcs12(blob, password.encode() if password else None)
    except ValueError as exc:
        if _looks_like_pkcs12(blob):
            if password:
                raise CertificateLoadError(
                    "Unable to load the provided certificate: the .pfx passphrase is wrong."
                ) from exc
            raise CertificateLoadError(
                "Unable to load the provided certificate: the .pfx is protected; supply its Password."
            ) from exc
        raise CertificateLoadError(
            "Unable to load the provided certificate: it is not DER, PEM or a valid .pfx file."
        ) from exc
    certs = []
    if key_and_certs.cert is not None:
        certs.append(key_and_certs.cert.certificate)
    certs.extend(c.certificate for c in key_and_certs.additional_certs)
    if not certs:
        raise CertificateLoadError("Unable to load the provided certificate: the .pfx holds no certificate.")
    return [describe(c) for c in certs]


def _looks_like_pkcs12(blob: bytes) -> bool:
    # A PKCS#12 PFX is a DER SEQUENCE starting with version INTEGER 3.
    return len(blob) > 8 and blob[0] == 0x30 and b"\x02\x01\x03" in blob[:8]


def decode_certificate_field(value: str) -> bytes:
    """RavenDB's ``Certificate`` field: base64 of DER, of a .pfx, or of PEM text (the Python client sends that).

    Bare PEM text is accepted too.
    """
    text = value.strip()
    if text.startswith("-----BEGIN"):
        return text.encode()
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadRequestError("Unable to parse the Certificate property, expected a Base64 value") from exc


def load_pem_bundle(pem: bytes) -> list[CertificateInfo]:
    """Certificates from a PEM file that may also hold a private key (the key is ignored)."""
    try:
        return [describe(c) for c in x509.load_pem_x509_certificates(pem)]
    except ValueError as exc:
        raise CertificateLoadError("The file holds no PEM certificate.") from exc


def find_issuer(der: bytes, candidates: Iterable[bytes]) -> CertificateInfo | None:
    """The certificate among ``candidates`` that signed ``der`` (name match and a verified signature), if any.

    Used by implicit trust (reference section 9): TLS already proved that the peer chains to one of Roost's
    anchors, this finds which one so that its pinning hash can be compared.
    """
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError:
        return None
    for candidate_der in candidates:
        try:
            candidate = x509.load_der_x509_certificate(candidate_der)
        except ValueError:
            continue
        if candidate.subject != cert.issuer or candidate_der == der:
            continue
        try:
            cert.verify_directly_issued_by(candidate)
        except (ValueError, TypeError, InvalidSignature):
            continue
        return describe(candidate)
    return None
