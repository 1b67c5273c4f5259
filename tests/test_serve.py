"""`roost serve` as a new user meets it: first start, restart, unsecured mode, clear refusals."""

from __future__ import annotations

import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import requests

from conftest import ROOT, start_server


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_first_start_creates_certificates_and_prints_how_to_connect(tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = start_server(data)
    try:
        certs = data / "certificates"
        for name in ("ca.key", "server.key", "admin.client.pem", "admin.client.zip"):
            assert _mode(certs / name) == 0o600, name
        with zipfile.ZipFile(certs / "admin.client.zip") as package:
            assert sorted(package.namelist()) == sorted(
                ["admin.client.pfx", "admin.client.crt", "admin.client.key", "README.txt"])
            assert all((info.external_attr >> 16) & 0o777 == 0o600 for info in package.infolist())
        server.wait_for_output("curl --cert")
        lines = "\n".join(server.output)
        assert f"Server available on: https://localhost:{server.port}" in lines
        assert f"Studio: https://localhost:{server.port}/studio/" in lines
        assert str((certs / "admin.client.zip").resolve()) in lines
        assert f"curl --cert {(certs / 'admin.client.pem').resolve()}" in lines
        whoami = server.admin().get(f"{server.url}/certificates/whoami").json()
        first_thumbprint = whoami["Thumbprint"]
        assert whoami["SecurityClearance"] == "ClusterAdmin"
        server_cert = (certs / "server.crt").read_bytes()
    finally:
        server.stop()
    again = start_server(data)
    try:
        assert (certs / "server.crt").read_bytes() == server_cert
        assert again.admin().get(f"{again.url}/certificates/whoami").json()["Thumbprint"] == first_thumbprint
    finally:
        again.stop()


def test_server_certificate_has_the_names_clients_verify(tmp_path: Path) -> None:
    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID

    server = start_server(tmp_path / "data")
    try:
        cert = x509.load_pem_x509_certificates((server.certs_dir / "server.crt").read_bytes())[0]
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert "localhost" in sans.get_values_for_type(x509.DNSName)
        assert {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)} >= {"127.0.0.1", "::1"}
        ekus = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert ExtendedKeyUsageOID.SERVER_AUTH in ekus and ExtendedKeyUsageOID.CLIENT_AUTH in ekus
        # Hostname verification on, against 127.0.0.1 too.
        response = requests.get(f"https://127.0.0.1:{server.port}/certificates/whoami",
                                cert=str(server.admin_pem), verify=str(server.ca_pem))
        assert response.status_code == 200
    finally:
        server.stop()


def test_a_wrong_path_is_one_clear_line_and_exit_code_2(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "roost", "serve", "--data-dir", str(tmp_path / "d"), "--port", "0",
         "--Security.Certificate.Path=/nope/server.pfx"],
        capture_output=True, text=True, cwd=ROOT, timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "Error: Security.Certificate.Path '/nope/server.pfx' (--Security.Certificate.Path) does not exist or is not a "
        "file (a .pfx), nor a directory holding tls.crt and tls.key (PEM, as a Kubernetes TLS secret is mounted)."
    ]
    assert not (tmp_path / "d").exists(), "nothing is created when the settings are wrong"


def test_unsecured_mode_warns_and_treats_everyone_as_admin(tmp_path: Path) -> None:
    server = start_server(tmp_path / "data", "--ServerUrl=http://127.0.0.1:0")
    try:
        assert server.url.startswith("http://127.0.0.1:")
        assert any("UNSECURED" in line for line in server.output)
        created = requests.put(f"{server.url}/admin/databases", params={"name": "open"})
        assert created.status_code == 201
        assert not (tmp_path / "data" / "certificates").exists()
    finally:
        server.stop()


def test_run_in_memory_removes_its_directory(tmp_path: Path) -> None:
    server = start_server(tmp_path / "unused", "--RunInMemory=true")
    try:
        line = server.wait_for_output("Admin client certificate:")
        assert "roost-in-memory-" in line
        pem = Path(line.split("(PEM: ", 1)[1].rstrip(")"))
        data_dir = pem.parent.parent
        response = requests.get(f"{server.url}/certificates/whoami", cert=str(pem),
                                verify=str(data_dir / "certificates" / "ca.crt"))
        assert response.status_code == 200
    finally:
        server.stop()
    assert not data_dir.exists()
    assert not (tmp_path / "unused").exists()
