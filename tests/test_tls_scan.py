"""Roost's TLS configuration, checked by a real scanner (sslyze) against a running server (issue 9).

The promises (tls.py): TLS 1.2 and 1.3 only, forward-secret AEAD cipher suites only, no client-initiated
renegotiation, no compression; plus HSTS on HTTPS and a chain that validates against Roost's CA. The twin test
scans a deliberately weak TLS server with the same checks and expects each weakness to be reported, so a
scanner that silently checked nothing would fail the suite.

sslyze 6 pins another cryptography than Roost, so it lives in its own virtualenv (.venv-sslyze, made by
`make test`, or here when it is missing) and runs as a subprocess with JSON output.
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import sys
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import ROOT, RunningServer

SSLYZE_VENV = ROOT / ".venv-sslyze"
SSLYZE = SSLYZE_VENV / "bin" / "sslyze"
REQUIREMENTS = ROOT / "tests" / "sslyze-requirements.txt"

AEAD_TLS12 = ("-GCM-", "-CHACHA20-POLY1305")
TLS13_SUITES = {"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"}
STRONG_CURVES = {"X25519", "X448", "secp256r1", "secp384r1", "secp521r1"}


@pytest.fixture(scope="session")
def sslyze() -> Path:
    """The scanner, installed into its own virtualenv if `make test` has not done it yet."""
    if not SSLYZE.exists():
        base_python = Path(sys.base_prefix) / "bin" / "python3"  # not Roost's venv: sslyze must not see its pins
        subprocess.run([str(base_python), "-m", "venv", str(SSLYZE_VENV)], check=True)
        subprocess.run([str(SSLYZE_VENV / "bin" / "python"), "-m", "pip", "install", "-q", "-r", str(REQUIREMENTS)],
                       check=True)
    return SSLYZE


def scan(sslyze: Path, port: int, tmp_path: Path, ca_file: Path) -> dict[str, Any]:
    out = tmp_path / f"scan-{port}.json"
    command = [
        str(sslyze), "--quiet", "--mozilla_config=disable", f"--json_out={out}",
        "--sslv2", "--sslv3", "--tlsv1", "--tlsv1_1", "--tlsv1_2", "--tlsv1_3",
        "--compression", "--reneg", "--heartbleed", "--openssl_ccs", "--fallback", "--elliptic_curves",
        "--certinfo", f"--certinfo_ca_file={ca_file}", "--http_headers",
        f"localhost:{port}",
    ]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    completed = subprocess.run(command, capture_output=True, text=True, timeout=240, env=env)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    report = json.loads(out.read_text())
    [result] = report["server_scan_results"]
    assert result["scan_status"] == "COMPLETED", result.get("connectivity_error_trace")
    commands: dict[str, Any] = result["scan_result"]
    for name, attempt in commands.items():
        if attempt["status"] != "NOT_SCHEDULED":
            assert attempt["status"] == "COMPLETED", (name, attempt.get("error_trace"))
    return {name: attempt["result"] for name, attempt in commands.items()}


def problems(results: dict[str, Any]) -> list[str]:
    """Every way the scanned server breaks Roost's TLS promises, in words."""
    found: list[str] = []
    for version in ("ssl_2_0", "ssl_3_0", "tls_1_0", "tls_1_1"):
        if results[f"{version}_cipher_suites"]["is_tls_version_supported"]:
            found.append(f"{version} is accepted")
    tls12 = results["tls_1_2_cipher_suites"]
    tls13 = results["tls_1_3_cipher_suites"]
    if not tls12["is_tls_version_supported"] and not tls13["is_tls_version_supported"]:
        found.append("neither TLS 1.2 nor TLS 1.3 is accepted")
    for accepted in tls12["accepted_cipher_suites"]:
        name = accepted["cipher_suite"]["openssl_name"]
        if not name.startswith("ECDHE-"):
            found.append(f"TLS 1.2 suite {name} is not forward-secret")
        if not any(mode in name for mode in AEAD_TLS12):
            found.append(f"TLS 1.2 suite {name} is not AEAD")
    for accepted in tls13["accepted_cipher_suites"]:
        if accepted["cipher_suite"]["name"] not in TLS13_SUITES:
            found.append(f"TLS 1.3 suite {accepted['cipher_suite']['name']} is unexpected")
    if results["tls_compression"]["supports_compression"]:
        found.append("TLS compression is enabled (CRIME)")
    renegotiation = results["session_renegotiation"]
    if renegotiation["is_vulnerable_to_client_renegotiation_dos"] or renegotiation["client_renegotiations_success_count"]:
        found.append("client-initiated renegotiation is accepted")
    if results["heartbleed"]["is_vulnerable_to_heartbleed"]:
        found.append("Heartbleed")
    if results["openssl_ccs_injection"]["is_vulnerable_to_ccs_injection"]:
        found.append("CCS injection")
    if not results["tls_fallback_scsv"]["supports_fallback_scsv"]:
        found.append("no TLS_FALLBACK_SCSV")
    curves = {c["name"] for c in results["elliptic_curves"]["supported_curves"] or []}
    if curves - STRONG_CURVES:
        found.append(f"weak curves {sorted(curves - STRONG_CURVES)}")
    [deployment] = results["certificate_info"]["certificate_deployments"][:1]
    own_ca = [p for p in deployment["path_validation_results"] if p["trust_store"]["name"] == "Supplied CA file"]
    if not own_ca or not own_ca[0]["was_validation_successful"]:
        found.append("the certificate chain does not validate against Roost's CA")
    hsts = results["http_headers"]["strict_transport_security_header"] if results["http_headers"] else None
    if hsts is None or hsts["max_age"] < 31536000:
        found.append("no Strict-Transport-Security of at least a year")
    return found


def test_roost_keeps_its_tls_promises(server: RunningServer, sslyze: Path, tmp_path: Path) -> None:
    results = scan(sslyze, server.port, tmp_path, server.ca_pem)
    assert problems(results) == []
    # And it is not vacuous: both modern versions are there, with suites.
    assert results["tls_1_2_cipher_suites"]["accepted_cipher_suites"]
    assert results["tls_1_3_cipher_suites"]["accepted_cipher_suites"]


class _WeakTLSServer:
    """An old-fashioned TLS server: TLS 1.0 and up, every cipher, renegotiation allowed, no HSTS."""

    def __init__(self, cert: Path, key: Path) -> None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # that is the point of this server
            context.minimum_version = ssl.TLSVersion.TLSv1
        context.set_ciphers("ALL:@SECLEVEL=0")
        context.options &= ~ssl.OP_NO_RENEGOTIATION
        context.load_cert_chain(str(cert), str(key))
        self.context = context
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.stopped = False
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self.stopped:
            try:
                raw, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(raw,), daemon=True).start()

    def _handle(self, raw: socket.socket) -> None:
        raw.settimeout(10)
        try:
            with self.context.wrap_socket(raw, server_side=True) as tls:
                if tls.recv(65536):
                    tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        except (OSError, ssl.SSLError):
            pass
        finally:
            raw.close()

    def stop(self) -> None:
        self.stopped = True
        self.listener.close()


@pytest.fixture
def weak_server(server: RunningServer) -> Iterator[_WeakTLSServer]:
    weak = _WeakTLSServer(server.certs_dir / "server.crt", server.certs_dir / "server.key")
    yield weak
    weak.stop()


def test_the_scan_catches_a_weak_configuration(weak_server: _WeakTLSServer, server: RunningServer, sslyze: Path,
                                               tmp_path: Path) -> None:
    found = problems(scan(sslyze, weak_server.port, tmp_path, server.ca_pem))
    assert "tls_1_0 is accepted" in found or "tls_1_1 is accepted" in found, found
    assert any("is not forward-secret" in p or "is not AEAD" in p for p in found), found
    assert "no Strict-Transport-Security of at least a year" in found, found
