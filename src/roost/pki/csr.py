"""PKCS#10 certificate requests: read, verified and judged before Roost's CA signs anything for them.

With a request the private key never exists on the server: the client proves it holds the key by the request's
signature, and the server signs only the public key. What the request asks for beyond its key (subject,
extensions) is ignored, except that a request for a CA certificate is refused rather than silently downgraded:
someone asking for CA:TRUE is making a mistake (or trying something) and should hear so.
"""

from __future__ import annotations

import base64
import binascii

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from roost.errors import BadRequestError

# The keys Roost issues for itself (pki/authority.KEY_TYPES) and the curves TLS 1.3 clients offer.
MIN_RSA_BITS = 2048
CURVES = ("secp256r1", "secp384r1", "secp521r1")
PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey
Request = x509.CertificateSigningRequest
_MAX_REQUEST_BYTES = 64 * 1024  # an RSA-4096 request is ~1.7 KB; anything near this is not a request


def load_request(value: object, field: str = "CertificateRequest") -> x509.CertificateSigningRequest:
    """A PEM request, or the base64 of its DER; refused (400) unless it is well-formed and self-signed."""
    if not isinstance(value, str) or not value.strip():
        raise BadRequestError(f"{field} is required: a PKCS#10 request in PEM (openssl req -new) or base64 DER.")
    if len(value) > _MAX_REQUEST_BYTES:
        raise BadRequestError(f"{field} is larger than {_MAX_REQUEST_BYTES} bytes: it is not a certificate request.")
    text = value.strip()
    try:
        if text.startswith("-----BEGIN"):
            request = x509.load_pem_x509_csr(text.encode())
        else:
            request = x509.load_der_x509_csr(base64.b64decode(text, validate=True))
    except (ValueError, binascii.Error):
        raise BadRequestError(
            f"{field} is not a PKCS#10 certificate request (PEM 'BEGIN CERTIFICATE REQUEST' or base64 DER)."
        ) from None
    try:
        valid = request.is_signature_valid
    except Exception:  # an unsupported signature algorithm cannot prove possession either
        valid = False
    if not valid:
        raise BadRequestError(
            f"The signature of the {field} does not verify: it must be signed by the private key it carries "
            "(make it again with roost certs request or openssl req -new)."
        )
    return request


def public_key_of(request: x509.CertificateSigningRequest) -> PublicKey:
    """The requested key, if it is strong enough and not a CA request."""
    try:
        constraints = request.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    except ValueError:
        raise BadRequestError("The certificate request carries a malformed extension.") from None
    if constraints is not None and constraints.ca:
        raise BadRequestError(
            "The certificate request asks for a CA certificate (basicConstraints CA:TRUE): Roost issues client "
            "certificates only. Make the request without the CA extension (openssl req -new without "
            "-addext basicConstraints=CA:TRUE)."
        )
    key = request.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise BadRequestError(
                f"The request's RSA key has {key.key_size} bits: use at least {MIN_RSA_BITS} (or EC P-256)."
            )
        return key
    if isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name not in CURVES:
            raise BadRequestError(
                f"The request's EC key uses the curve {key.curve.name}: use P-256, P-384 or P-521."
            )
        return key
    raise BadRequestError("The request's key is neither RSA nor EC: use EC P-256 or RSA of at least 2048 bits.")


def new_request(name: str) -> tuple[bytes, str]:
    """For the client (roost certs request / renew): an EC P-256 key (PKCS#8 PEM) and a request signed by it."""
    key = ec.generate_private_key(ec.SECP256R1())
    request = (x509.CertificateSigningRequestBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
               .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return key_pem, request.public_bytes(serialization.Encoding.PEM).decode()
