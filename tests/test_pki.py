"""What Roost's certificates are made of: every security-relevant X.509 field, checked."""

from __future__ import annotations

import datetime as dt
import io
import zipfile

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID

from conftest import RunningServer
from roost.pki import packages
from roost.pki.authority import CertificateAuthority, generate_private_key
from roost.pki.inspect import CertificateLoadError, load_certificates


def test_internal_ca_can_only_issue_end_entities() -> None:
    ca = CertificateAuthority.create()
    constraints = ca.certificate.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca and constraints.value.path_length == 0
    usage = ca.certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign and usage.crl_sign and not usage.digital_signature


def test_client_certificate_is_client_auth_only_and_backdated() -> None:
    ca = CertificateAuthority.create()
    key = generate_private_key("EC-P256")
    cert = ca.issue_client("app", key)
    assert cert.subject.rfc4514_string() == "CN=app"
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    assert eku.critical and list(eku.value) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    now = dt.datetime.now(dt.UTC)
    assert dt.timedelta(days=6) < now - cert.not_valid_before_utc <= dt.timedelta(days=7, minutes=1)
    assert 5 * 365 - 1 <= (cert.not_valid_after_utc - now).days <= 5 * 365


def test_package_with_passphrase_protects_pfx_and_key() -> None:
    ca = CertificateAuthority.create()
    key = generate_private_key("EC-P256")
    cert = ca.issue_client("app", key)
    package = packages.client_package("app", cert, key, "s3cret", ca.certificate)
    with zipfile.ZipFile(io.BytesIO(package)) as archive:
        pfx = archive.read("app.pfx")
        key_pem = archive.read("app.key")
        readme = archive.read("README.txt").decode()
    with pytest.raises(ValueError):
        pkcs12.load_key_and_certificates(pfx, b"wrong")
    loaded = pkcs12.load_key_and_certificates(pfx, b"s3cret")
    assert loaded[1] == cert and [c for c in loaded[2]] == [ca.certificate]
    assert b"ENCRYPTED" in key_pem
    with pytest.raises(TypeError):
        serialization.load_pem_private_key(key_pem, None)
    assert "Firefox" in readme and "Windows" in readme and "macOS" in readme and "curl" in readme
    # The loader says which problem it met.
    with pytest.raises(CertificateLoadError, match="passphrase is wrong"):
        load_certificates(pfx, "wrong")
    with pytest.raises(CertificateLoadError, match="supply its Password"):
        load_certificates(pfx, None)
    with pytest.raises(CertificateLoadError, match="not DER, PEM or a valid .pfx"):
        load_certificates(b"garbage bytes", None)


def test_generated_package_over_the_api_and_no_private_key_is_stored(server: RunningServer) -> None:
    response = server.admin().post(f"{server.url}/admin/certificates", json={
        "Name": "keyless", "SecurityClearance": "ValidUser", "Permissions": {}})
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/octet-stream"
    assert 'filename="keyless.zip"' in response.headers["Content-Disposition"]
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        key_pem = archive.read("keyless.key")
        cert = x509.load_pem_x509_certificate(archive.read("keyless.crt"))
    key = serialization.load_pem_private_key(key_pem, None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert cert.issuer == x509.load_pem_x509_certificate(server.ca_pem.read_bytes()).subject
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    raw_scalar = key.private_numbers().private_value.to_bytes(32, "big")
    import base64

    for path in server.data_dir.rglob("*"):
        if path.is_file() and path.name not in ("admin.client.zip", "admin.client.pem"):
            content = path.read_bytes()
            for secret in (key_pem, der, raw_scalar, base64.b64encode(der)):
                assert secret not in content, f"{path} holds the client's private key"
