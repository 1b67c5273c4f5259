"""Client certificate packages: ``<Name>.zip`` holding ``.pfx``, ``.crt``, ``.key`` and import instructions.

Exactly one ``.crt``, one ``.key`` and one ``.pfx``, as RavenDB's package: clients and scripts (the official
clients' helpers too) take "the .crt in the zip", so a second certificate file beside the client's would be
picked by mistake. Roost's CA certificate travels inside the ``.pfx`` chain instead, and is downloaded as PEM
from ``GET /certificates/ca`` (the README says how).
"""

from __future__ import annotations

import io
import stat
import time
import zipfile

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from roost.pki.authority import PrivateKey

# PBES2 with AES-256 and SHA-256 (the modern PKCS#12 profile that Windows 10+, macOS and browsers import).
# Twice OpenSSL's own default (2048) PBKDF2 rounds: about 8 ms per package here (bench/ figure 1). The
# passphrase protects the file in transit; 100,000 rounds would make every generation cost ~0.15 s of CPU.
PFX_KDF_ROUNDS = 4096

_ENTRY_MODE = (stat.S_IFREG | stat.S_IRUSR | stat.S_IWUSR) << 16  # 0600: only the owner reads the key


def pfx_bytes(
    name: str,
    certificate: x509.Certificate,
    private_key: PrivateKey | None,
    password: str | None,
    extra_certificates: list[x509.Certificate] | None = None,
) -> bytes:
    if password:
        encryption: serialization.KeySerializationEncryption = (
            serialization.PrivateFormat.PKCS12.encryption_builder()
            .kdf_rounds(PFX_KDF_ROUNDS)
            .key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC)
            .hmac_hash(hashes.SHA256())
            .build(password.encode())
        )
    else:
        # Explicitly unencrypted: the caller chose no passphrase; the zip itself is the secret.
        encryption = serialization.NoEncryption()
    return pkcs12.serialize_key_and_certificates(
        name.encode(), private_key, certificate, extra_certificates or None, encryption
    )


def certificates_pfx(certificates: list[x509.Certificate]) -> bytes:
    """A key-less, password-less .pfx collection (RavenDB's export of the server certificates)."""
    return pkcs12.serialize_key_and_certificates(None, None, None, certificates, serialization.NoEncryption())


def der_certificates_pfx(ders: list[bytes]) -> bytes:
    return certificates_pfx([x509.load_der_x509_certificate(d) for d in ders])


def certificate_pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def private_key_pem(private_key: PrivateKey, password: str | None) -> bytes:
    if password:
        # Traditional OpenSSL PEM with AES-256-CBC: what curl, openssl and RavenDB's own .key files use.
        return private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.BestAvailableEncryption(password.encode()),
        )
    return private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def pem_bundle(certificate: x509.Certificate, private_key: PrivateKey) -> bytes:
    """Certificate and unencrypted key in one file: what curl's --cert and the RavenDB Python client take."""
    return certificate_pem(certificate) + private_key_pem(private_key, None)


def readme_text(name: str, *, has_password: bool, server_url: str | None = None) -> str:
    url = server_url or "https://your-roost-server:8443"
    pw_pfx = ("it asks for the passphrase you chose" if has_password
              else "it has no passphrase: leave the field empty if asked")
    key_note = (
        f"{name}.key is encrypted with your passphrase. curl asks for it with --pass; the RavenDB Python client\n"
        f"needs an unencrypted key, make one with:\n"
        f"  openssl pkey -in {name}.key -out {name}.plain.key      (it asks for the passphrase)\n"
        f"  cat {name}.crt {name}.plain.key > {name}.pem && chmod 600 {name}.pem\n"
        if has_password
        else f"{name}.key is not encrypted: keep it as safe as a password. For one-file tools:\n"
        f"  cat {name}.crt {name}.key > {name}.pem && chmod 600 {name}.pem\n"
    )
    return f"""Roost client certificate package: {name}
{'=' * (33 + len(name))}

Files
  {name}.pfx   certificate + private key (+ Roost's CA certificate), for browsers and operating systems
  {name}.crt   the certificate (PEM)
  {name}.key   the private key (PEM)

The server's CA certificate (roost-ca.crt below: clients verify the server with it) is inside {name}.pfx.
Take it out as PEM with either of:
  openssl pkcs12 -in {name}.pfx -cacerts -nokeys -out roost-ca.crt{"" if has_password else " -passin pass:"}
  curl -k --cert {name}.crt --key {name}.key -o roost-ca.crt {url}/certificates/ca
(-k once, to fetch the CA itself; compare its fingerprint with your administrator's if in doubt.)

The server keeps only the public certificate. If you lose these files, ask an administrator
to generate a new certificate: the private key cannot be recovered.

Download, install, access
  1. Extract this zip somewhere only you can read.
  2. Import {name}.pfx ({pw_pfx}):
     - Windows: double-click {name}.pfx and confirm every step of the Certificate Import Wizard with Next.
       Chrome and Edge on Windows use this store; restart the browser afterwards.
     - macOS: double-click {name}.pfx; Keychain Access adds it to the "login" keychain.
       Chrome and Safari use it; restart the browser afterwards.
     - Chrome on Linux: Settings > Privacy and security > Security > Manage certificates >
       Your certificates > Import.
     - Firefox (any system): Settings > Privacy & Security > Certificates > View Certificates >
       Your Certificates > Import.
  3. Open {url}/studio and pick this certificate when the browser asks for one.
     If the browser offers no certificate or a wrong one, it may have cached an earlier choice:
     open a new private window.

Command line (curl)
  curl --cert {name}.crt --key {name}.key --cacert roost-ca.crt {url}/certificates/whoami

{key_note}
RavenDB client (Python)
  from ravendb import DocumentStore
  store = DocumentStore(urls=["{url}"], database="mydb")
  store.certificate_pem_path = "{name}.pem"      # certificate + unencrypted key
  store.trust_store_path = "roost-ca.crt"
  store.initialize()
"""


def client_package(
    name: str,
    certificate: x509.Certificate,
    private_key: PrivateKey,
    password: str | None,
    ca_certificate: x509.Certificate | None,
    *,
    server_url: str | None = None,
) -> bytes:
    """The zip RavenDB returns from generate, plus a README.txt. Every entry is mode 0600."""
    extras = [ca_certificate] if ca_certificate is not None else []
    files = {
        f"{name}.pfx": pfx_bytes(name, certificate, private_key, password, extras),
        f"{name}.crt": certificate_pem(certificate),
        f"{name}.key": private_key_pem(private_key, password),
        "README.txt": readme_text(name, has_password=bool(password), server_url=server_url).encode(),
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for entry, data in files.items():
            info = zipfile.ZipInfo(entry, date_time=time.gmtime()[:6])
            info.external_attr = _ENTRY_MODE
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    return buffer.getvalue()
