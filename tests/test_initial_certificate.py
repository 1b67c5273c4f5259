"""InitialClientCertificate.Clearance and ``roost certs initial``: the first certificate of a (hosted) server."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import ROOT, start_server


def roost(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "roost", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=120)


def test_hosted_initial_certificate_is_operator(tmp_path: Path) -> None:
    server = start_server(tmp_path / "data", "--InitialClientCertificate.Clearance=Operator")
    try:
        admin = server.admin()
        assert admin.get(f"{server.url}/certificates/whoami").json()["SecurityClearance"] == "Operator"
        # Operator: manages users and databases, but cannot mint a ClusterAdmin (the provider keeps that).
        assert admin.put(f"{server.url}/admin/databases", params={"name": "mine"}).status_code == 201
        refused = admin.post(f"{server.url}/admin/certificates",
                             json={"Name": "boss", "SecurityClearance": "ClusterAdmin", "Permissions": {}})
        assert refused.status_code == 403
        server.generate("app", "ValidUser", {"mine": "ReadWrite"})
    finally:
        server.stop()


def test_default_initial_certificate_is_cluster_admin(fresh_server) -> None:  # type: ignore[no-untyped-def]
    whoami = fresh_server.admin().get(f"{fresh_server.url}/certificates/whoami").json()
    assert whoami["SecurityClearance"] == "ClusterAdmin"


def test_bad_clearance_refuses_to_start(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="InitialClientCertificate.Clearance"):
        start_server(tmp_path / "data", "--InitialClientCertificate.Clearance=ValidUser", timeout=20)


def test_cli_exports_the_initial_package(fresh_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "initial.zip"
    done = roost("certs", "initial", "--data-dir", str(fresh_server.data_dir), "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert out.stat().st_mode & 0o077 == 0
    with zipfile.ZipFile(out) as archive:
        names = set(archive.namelist())
        readme = archive.read("README.txt").decode()
    assert names == {"admin.client.pfx", "admin.client.crt", "admin.client.key", "README.txt"}
    # The seed's steps: extract, import the .pfx (wizard, Next), restart the browser, Firefox/Linux by hand, pick it.
    for phrase in ("Extract this zip", "Certificate Import Wizard", "Next", "restart the browser", "Firefox",
                   "pick this certificate", "curl --cert", "admin.client.pem", fresh_server.url):
        assert phrase in readme, phrase
    assert out.read_bytes() == (fresh_server.certs_dir / "admin.client.zip").read_bytes()
    again = roost("certs", "initial", "--data-dir", str(fresh_server.data_dir), "--out", str(out))
    assert again.returncode == 1 and "already exists" in again.stderr
    missing = roost("certs", "initial", "--data-dir", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x.zip"))
    assert missing.returncode == 1 and "start the server once" in missing.stderr
    assert not (tmp_path / "x.zip").exists()
