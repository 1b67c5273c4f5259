"""The client certificate package holds exactly one certificate file; the CA comes from the .pfx or the server.

Clients and scripts take "the .crt in the zip" (the official clients' helpers too), so a second .crt beside the
client's (the CA, as the package once carried) gets loaded with the client's key and fails, or gets uploaded.
"""

from __future__ import annotations

import io
import ssl
import subprocess
import zipfile
from pathlib import Path

import requests
from cryptography import x509

from conftest import RunningServer


def _package(server: RunningServer, name: str, password: str | None = None) -> zipfile.ZipFile:
    body = {"Name": name, "SecurityClearance": "ValidUser", "Permissions": {}}
    if password:
        body["Password"] = password
    response = server.admin().post(f"{server.url}/admin/certificates", json=body)
    assert response.status_code == 200, response.text
    return zipfile.ZipFile(io.BytesIO(response.content))


def test_the_package_has_one_crt_one_key_one_pfx(server: RunningServer, tmp_path: Path) -> None:
    package = _package(server, "one-crt")
    names = package.namelist()
    assert sorted(names) == ["README.txt", "one-crt.crt", "one-crt.key", "one-crt.pfx"]
    # "The .crt in the zip" is the client's: it loads with the .key into a TLS context (a CA would not).
    for name in names:
        (tmp_path / name).write_bytes(package.read(name))
    crts = [n for n in names if n.endswith(".crt")]
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_cert_chain(tmp_path / crts[0], tmp_path / "one-crt.key")
    certificate = x509.load_pem_x509_certificate((tmp_path / crts[0]).read_bytes())
    assert certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False


def test_the_readme_ways_to_the_ca_work(server: RunningServer, tmp_path: Path) -> None:
    """Both commands the README gives (openssl out of the .pfx, curl from the server) yield the server's CA."""
    ca = server.ca_pem.read_bytes()
    package = _package(server, "ca-ways")
    readme = package.read("README.txt").decode()
    for name in package.namelist():
        (tmp_path / name).write_bytes(package.read(name))
    commands = [line.strip() for line in readme.splitlines() if line.strip().startswith(("openssl pkcs12", "curl -k"))]
    assert len(commands) == 2, readme
    for command in commands:
        command = command.replace("https://your-roost-server:8443", server.url)
        (tmp_path / "roost-ca.crt").unlink(missing_ok=True)
        done = subprocess.run(command, shell=True, cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, (command, done.stderr)
        extracted = x509.load_pem_x509_certificates((tmp_path / "roost-ca.crt").read_bytes())
        assert extracted == [x509.load_pem_x509_certificate(ca)], command
    # And the CA verifies the server: the README's whoami line works with it.
    whoami = subprocess.run(["curl", "-sf", "--cert", "ca-ways.crt", "--key", "ca-ways.key", "--cacert", "roost-ca.crt",
                             f"{server.url}/certificates/whoami"], cwd=tmp_path, capture_output=True, timeout=60)
    assert whoami.returncode == 0 and b"ca-ways" in whoami.stdout


def test_a_passphrase_pfx_still_carries_the_ca(server: RunningServer, tmp_path: Path) -> None:
    package = _package(server, "ca-secret", password="s3cret-pass")
    (tmp_path / "p.pfx").write_bytes(package.read("ca-secret.pfx"))
    out = subprocess.run(["openssl", "pkcs12", "-in", "p.pfx", "-cacerts", "-nokeys", "-passin", "pass:s3cret-pass"],
                         cwd=tmp_path, capture_output=True, timeout=60)
    assert out.returncode == 0 and x509.load_pem_x509_certificates(out.stdout) == [
        x509.load_pem_x509_certificate(server.ca_pem.read_bytes())]
    wrong = subprocess.run(["openssl", "pkcs12", "-in", "p.pfx", "-cacerts", "-nokeys", "-passin", "pass:wrong"],
                           cwd=tmp_path, capture_output=True, timeout=60)
    assert wrong.returncode != 0


def test_the_ca_download_needs_a_valid_certificate(server: RunningServer) -> None:
    mine = server.admin().get(f"{server.url}/certificates/ca")
    assert mine.status_code == 200 and mine.headers["Content-Type"].startswith("application/x-pem-file")
    assert 'filename="roost-ca.crt"' in mine.headers["Content-Disposition"]
    assert mine.content == server.ca_pem.read_bytes()
    nobody = requests.get(f"{server.url}/certificates/ca", verify=str(server.ca_pem))
    assert nobody.status_code == 403 and b"BEGIN CERTIFICATE" not in nobody.content
