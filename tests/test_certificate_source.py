"""A user-supplied server certificate that changes under a running server (issue 18): a .pfx file replaced, a
Kubernetes-style tls.crt/tls.key directory updated, Security.Certificate.Load.Exec; each new certificate checked
before it is installed, without a restart or a dropped connection; and an expired one at start-up explained."""

from __future__ import annotations

import datetime as dt
import os
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from certtools import outside_ca
from conftest import ROOT, RunningServer, start_server
from roost.pki import packages
from roost.pki.authority import CertificateAuthority, default_server_hosts

WATCH = "--Security.Certificate.WatchSeconds=0.2"


def server_certificate(authority: CertificateAuthority, *, expired: bool = False) -> tuple[x509.Certificate, object]:
    key = ec.generate_private_key(ec.SECP256R1())
    if not expired:
        return authority.issue_server(key, default_server_hosts()), key
    now = dt.datetime.now(dt.UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(authority.certificate.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=30)).not_valid_after(now - dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
            .sign(authority.private_key, hashes.SHA256()))
    return cert, key


def write_pfx(path: Path, authority: CertificateAuthority, **kw: bool) -> str:
    cert, key = server_certificate(authority, **kw)
    staged = path.with_suffix(".new")
    staged.write_bytes(packages.pfx_bytes("server", cert, key, None, [authority.certificate]))  # type: ignore[arg-type]
    os.replace(staged, path)  # as a deploy tool writes it: the whole file at once
    return cert.fingerprint(hashes.SHA1()).hex().upper()


def write_pem_pair(directory: Path, authority: CertificateAuthority) -> str:
    """As Kubernetes updates a mounted secret: a new timestamped directory, then the ..data link swapped."""
    cert, key = server_certificate(authority)
    stamp = directory / f"..{time.monotonic_ns()}"
    stamp.mkdir()
    (stamp / "tls.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM)
                                    + authority.certificate.public_bytes(serialization.Encoding.PEM))
    (stamp / "tls.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,  # type: ignore[attr-defined]
                                                      serialization.NoEncryption()))
    link = directory / "..data"
    temporary = directory / "..data_tmp"
    temporary.unlink(missing_ok=True)
    temporary.symlink_to(stamp.name)
    os.replace(temporary, link)
    for name in ("tls.crt", "tls.key"):
        if not (directory / name).is_symlink():
            (directory / name).symlink_to(f"..data/{name}")
    return cert.fingerprint(hashes.SHA1()).hex().upper()


def presented(port: int) -> str:
    """The thumbprint of the certificate a new TLS handshake gets."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname="localhost") as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).fingerprint(hashes.SHA1()).hex().upper()


def until_presented(server: RunningServer, thumbprint: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while presented(server.port) != thumbprint:
        assert time.monotonic() < deadline, f"still presenting {presented(server.port)}, not {thumbprint}"
        time.sleep(0.1)


@pytest.fixture
def issuer() -> CertificateAuthority:
    return outside_ca("Deploy tool CA")


def test_a_replaced_pfx_is_presented_without_a_restart_or_a_dropped_connection(tmp_path: Path,
                                                                               issuer: CertificateAuthority) -> None:
    pfx = tmp_path / "server.pfx"
    first = write_pfx(pfx, issuer)
    server = start_server(tmp_path / "data", f"--Security.Certificate.Path={pfx}", WATCH)
    try:
        assert presented(server.port) == first
        session = server.admin()
        issuer_pem = tmp_path / "issuer.crt"
        issuer_pem.write_bytes(issuer.certificate_pem())
        session.verify = str(issuer_pem)  # the server certificate is the deploy tool's, not Roost's CA's
        assert session.get(f"{server.url}/certificates/whoami").status_code == 200
        second = write_pfx(pfx, issuer)
        until_presented(server, second)
        # The connection opened before keeps working (it keeps the certificate it negotiated).
        assert session.get(f"{server.url}/certificates/whoami").status_code == 200
        assert '"server-certificate.replaced"' in (server.data_dir / "audit.log").read_text()
        # The twin: a file that does not load changes nothing, and says why.
        pfx.write_bytes(b"not a pfx")
        time.sleep(1.0)
        assert presented(server.port) == second
        server.wait_for_output("The new server certificate was not installed")
        # Nor does an expired certificate.
        write_pfx(pfx, issuer, expired=True)
        time.sleep(1.0)
        assert presented(server.port) == second
        third = write_pfx(pfx, issuer)
        until_presented(server, third)
    finally:
        server.stop()


def test_a_kubernetes_tls_secret_directory_is_followed(tmp_path: Path, issuer: CertificateAuthority) -> None:
    secret = tmp_path / "tls"
    secret.mkdir()
    first = write_pem_pair(secret, issuer)
    server = start_server(tmp_path / "data", f"--Security.Certificate.Path={secret}", WATCH)
    try:
        assert presented(server.port) == first
        second = write_pem_pair(secret, issuer)  # cert-manager renewed it
        until_presented(server, second)
    finally:
        server.stop()


def test_load_exec_supplies_the_certificate_at_start_and_on_refresh(tmp_path: Path,
                                                                    issuer: CertificateAuthority) -> None:
    pfx = tmp_path / "from-the-vault.pfx"
    first = write_pfx(pfx, issuer)
    script = tmp_path / "get-cert.sh"
    script.write_text(f"#!/bin/sh\ncat {pfx}\n")
    script.chmod(0o700)
    server = start_server(tmp_path / "data", f"--Security.Certificate.Load.Exec={script}",
                          "--Security.Certificate.Load.Exec.RefreshSeconds=1")
    try:
        assert presented(server.port) == first
        second = write_pfx(pfx, issuer)
        until_presented(server, second)
    finally:
        server.stop()
    # The twin: a command that fails stops the start with its own words.
    failing = tmp_path / "fails.sh"
    failing.write_text("#!/bin/sh\necho 'vault is sealed' >&2\nexit 3\n")
    failing.chmod(0o700)
    result = subprocess.run([sys.executable, "-m", "roost", "serve", "--data-dir", str(tmp_path / "other"), "--port",
                             "0", f"--Security.Certificate.Load.Exec={failing}"],
                            capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 2 and "vault is sealed" in result.stderr


def test_an_expired_supplied_certificate_at_start_says_how_to_recover(tmp_path: Path,
                                                                      issuer: CertificateAuthority) -> None:
    pfx = tmp_path / "expired.pfx"
    write_pfx(pfx, issuer, expired=True)
    result = subprocess.run([sys.executable, "-m", "roost", "serve", "--data-dir", str(tmp_path / "data"), "--port",
                             "0", f"--Security.Certificate.Path={pfx}"],
                            capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 2
    text = result.stderr
    assert "expired" in text and "To recover" in text
    assert "Start without that setting" in text and "ca.crt" in text
    assert len(text.splitlines()) <= 24  # one screen
