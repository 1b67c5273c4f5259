"""Expiry notifications and the server certificate's renewal window, against a real server whose clock is moved
with the test_clock_offset_seconds setting (the one clock tests may move)."""

from __future__ import annotations

from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from conftest import RunningServer, start_server

DAY = 86400


def _loaded(server: RunningServer) -> str:
    response = server.admin().get(f"{server.url}/admin/certificates", params={"metadataOnly": "true"})
    assert response.status_code == 200, response.text
    return str(response.json()["LoadedServerCert"])


def test_notifications_and_the_renewal_window_with_the_clock_moved(tmp_path: Path) -> None:
    first = start_server(tmp_path / "data")
    try:
        original = _loaded(first)
        soon = first.generate("notice-soon", "ValidUser", ExpirationMonths=13)  # ~396 days
        lapsed = first.generate("notice-lapsed", "ValidUser", ExpirationMonths=3)
        first.generate("notice-later", "ValidUser")  # five years
        operator = first.generate("notice-operator", "Operator", ExpirationMonths=13, directory=tmp_path)
        user = first.generate("notice-user", "ValidUser", directory=tmp_path)
        nothing = first.session(operator.pem_path).get(f"{first.url}/admin/notifications")
        assert nothing.status_code == 200 and nothing.json() == {"WithinDays": 30, "Notifications": []}
    finally:
        first.stop()

    # 377 days later the generated server certificate (397 days) has 20 left: inside the default 30-day
    # window, outside a 10-day one. With 10 days it is kept, and the notifications say it expires.
    offset = f"--test_clock_offset_seconds={377 * DAY}"
    kept = start_server(tmp_path / "data", offset, "--server_certificate_renew_days=10")
    try:
        assert _loaded(kept) == original
        answer = kept.session(operator.pem_path).get(f"{kept.url}/admin/notifications")
        assert answer.status_code == 200, answer.text
        found = {n["Name"]: n for n in answer.json()["Notifications"]}
        assert set(found) == {"Server Certificate", "notice-soon", "notice-lapsed", "notice-operator"}
        assert found["Server Certificate"]["Type"] == "ServerCertificateExpiring"
        assert 18 <= found["Server Certificate"]["DaysLeft"] <= 20
        assert found["notice-soon"]["Type"] == "CertificateExpiring"
        assert found["notice-soon"]["Thumbprint"] == soon.thumbprint and not found["notice-soon"]["Own"]
        assert found["notice-lapsed"]["Type"] == "CertificateExpired"
        assert found["notice-lapsed"]["Thumbprint"] == lapsed.thumbprint
        assert found["notice-operator"]["Own"] is True  # the caller's own certificate
        refused = kept.session(user.pem_path).get(f"{kept.url}/admin/notifications")
        assert refused.status_code == 403  # the twin: a User does not read them
    finally:
        kept.stop()

    # The same day with the default window: renewed at start-up.
    renewed = start_server(tmp_path / "data", offset)
    try:
        # (Not asked over HTTPS: the new certificate starts 376 days from the test's real clock.)
        warning = next(line for line in renewed.output if line.startswith("Warning: The generated server certificate"))
        assert original in warning
        served = x509.load_pem_x509_certificate((renewed.certs_dir / "server.crt").read_bytes())
        assert served.fingerprint(hashes.SHA1()).hex().upper() != original
    finally:
        renewed.stop()
