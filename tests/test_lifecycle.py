"""Keys that never leave the client (issue 18): a certificate request signed by the server, and a certificate
renewing itself, against a real server over real TLS; each refusal changes nothing."""

from __future__ import annotations

import base64
import datetime as dt
import subprocess
import sys
import time
from pathlib import Path

import pyotp
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from certtools import issue, roost_ca
from conftest import RunningServer

CSR_URL = "/admin/certificates/csr"


def _request(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey, *, ca: bool = False) -> x509.CertificateSigningRequest:
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ignored")]))
    if ca:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    return builder.sign(key, hashes.SHA256())


def _pem(csr: x509.CertificateSigningRequest) -> str:
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def _key_pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _save(directory: Path, name: str, certificate_pem: bytes, key: ec.EllipticCurvePrivateKey) -> Path:
    path = directory / f"{name}-{time.monotonic_ns()}.pem"
    path.write_bytes(certificate_pem + _key_pem(key))
    path.chmod(0o600)
    return path


def _count(server: RunningServer) -> int:
    listed = server.admin().get(f"{server.url}/admin/certificates", params={"secondary": "true",
                                                                            "metadataOnly": "true"})
    assert listed.status_code == 200, listed.text
    return int(listed.json()["TotalResults"])


def _sign(session: requests.Session, server: RunningServer, request_pem: str, **body: object) -> requests.Response:
    body = {"Name": "from-csr", "SecurityClearance": "ValidUser", "Permissions": {}, "CertificateRequest": request_pem,
            **body}
    return session.post(f"{server.url}{CSR_URL}", json=body)


# POST /admin/certificates/csr --------------------------------------------------------------------------------


def test_a_signed_request_is_registered_at_once_and_passes_tls_with_its_permissions(server: RunningServer,
                                                                                    tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    der = _request(key).public_bytes(serialization.Encoding.DER)
    answer = _sign(server.admin(), server, base64.b64encode(der).decode(), Name="csr-user",
                   Permissions={"csr-db": "ReadWrite"}, ExpirationMonths=2)  # base64 DER is accepted as well as PEM
    assert answer.status_code == 201, answer.text
    assert answer.headers["Content-Type"].startswith("application/x-pem-file")
    certificate = x509.load_pem_x509_certificate(answer.content)
    assert certificate.public_key() == key.public_key()  # the client's key, signed: the server never had it
    assert certificate.subject.rfc4514_string() == "CN=csr-user"  # the settings' name, not the request's
    assert certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert 55 <= (certificate.not_valid_after_utc - dt.datetime.now(dt.UTC)).days <= 62
    session = server.session(_save(tmp_path, "csr-user", answer.content, key))
    me = session.get(f"{server.url}/certificates/whoami")
    assert me.status_code == 200, me.text
    assert me.json()["Name"] == "csr-user" and me.json()["Permissions"] == {"csr-db": "ReadWrite"}
    assert me.json()["Thumbprint"] == answer.headers["X-Roost-Thumbprint"]
    assert session.get(f"{server.url}/admin/certificates").status_code == 403  # a User, as asked


def test_requests_that_prove_nothing_or_ask_too_much_are_refused_and_change_nothing(server: RunningServer) -> None:
    operator_cert = server.generate("csr-operator", "Operator")
    operator = server.session(operator_cert.pem_path)
    key = ec.generate_private_key(ec.SECP256R1())
    good = _request(key)
    der = bytearray(good.public_bytes(serialization.Encoding.DER))
    der[-3] ^= 0x55  # inside the signature: the request no longer proves possession of the key
    tampered = base64.b64encode(bytes(der)).decode()
    before = _count(server)
    refusals = [
        (_sign(server.admin(), server, tampered), 400, "does not verify"),
        (_sign(server.admin(), server, _pem(_request(key, ca=True))), 400, "asks for a CA certificate"),
        (_sign(server.admin(), server, _pem(_request(rsa.generate_private_key(65537, 1024)))), 400, "1024 bits"),
        (_sign(server.admin(), server, "not a request"), 400, "is not a PKCS#10 certificate request"),
        (_sign(operator, server, _pem(good), SecurityClearance="ClusterAdmin"), 403,
         "Cannot generate the client certificate 'from-csr' with 'Cluster Admin' security clearance"),
        (_sign(server.session(server.generate("csr-plain-user").pem_path), server, _pem(good)), 403, ""),
    ]
    for response, status, message in refusals:
        assert response.status_code == status, response.text
        assert message in response.json()["Message"]
    assert _count(server) == before + 1  # only the plain user generated above
    allowed = _sign(operator, server, _pem(good), Name="csr-by-operator", SecurityClearance="Operator")
    assert allowed.status_code == 201, allowed.text  # the twin: an Operator may ask for Operator


def test_roost_certs_request_makes_the_key_here_with_mode_0600(server: RunningServer, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from roost.cli.main import main

    runner = CliRunner()
    common = ["--url", server.url, "--cert", str(server.admin_pem), "--ca", str(server.ca_pem)]
    result = runner.invoke(main, ["certs", "request", "cli-csr", "-p", "cli-db=Read", "--out", str(tmp_path),
                                  *common])
    assert result.exit_code == 0, result.output
    for suffix in ("crt", "key", "pem"):
        assert (tmp_path / f"cli-csr.{suffix}").stat().st_mode & 0o777 == 0o600
    me = server.session(tmp_path / "cli-csr.pem").get(f"{server.url}/certificates/whoami").json()
    assert me["Name"] == "cli-csr" and me["Permissions"] == {"cli-db": "Read"}
    again = runner.invoke(main, ["certs", "request", "cli-csr", "--out", str(tmp_path), *common])
    assert again.exit_code != 0 and "already exist" in again.output  # the twin: nothing overwritten silently


# POST /certificates/renew ------------------------------------------------------------------------------------


def _renew(session: requests.Session, server: RunningServer, key: ec.EllipticCurvePrivateKey) -> requests.Response:
    return session.post(f"{server.url}/certificates/renew", json={"CertificateRequest": _pem(_request(key))})


def test_a_client_renews_itself_and_the_successor_keeps_name_clearance_permissions_and_2fa(
        server: RunningServer, tmp_path: Path) -> None:
    secret = server.admin().get(f"{server.url}/admin/certificates/2fa/generate").json()["Secret"]
    old = server.generate("renewing", "ValidUser", {"renew-db": "Read"}, ExpirationMonths=3,
                          TwoFactorAuthenticationKey=secret)
    session = server.session(old.pem_path)
    assert session.post(f"{server.url}/authentication/2fa", params={"hasLimits": "false"},
                        json={"Token": pyotp.TOTP(secret).now()}).status_code == 202
    key = ec.generate_private_key(ec.SECP256R1())
    answer = _renew(session, server, key)
    assert answer.status_code == 201, answer.text
    new_thumbprint = answer.headers["X-Roost-Thumbprint"]
    assert new_thumbprint != old.thumbprint
    listed = server.admin().get(f"{server.url}/admin/certificates", params={"thumbprint": new_thumbprint}).json()
    entry = listed["Results"][0]
    assert (entry["Name"], entry["SecurityClearance"], entry["Permissions"], entry["HasTwoFactor"]) == (
        "renewing", "ValidUser", {"renew-db": "Read"}, True)
    certificate = x509.load_pem_x509_certificate(answer.content)
    assert 85 <= (certificate.not_valid_after_utc - dt.datetime.now(dt.UTC)).days <= 95  # the same lifetime
    # The successor authenticates (and asks for its own 2FA session, as its predecessor did) ...
    successor = server.session(_save(tmp_path, "renewed", answer.content, key))
    assert successor.get(f"{server.url}/certificates/whoami").status_code == 428
    # ... and the old one stays valid until it expires.
    assert session.get(f"{server.url}/certificates/whoami").json()["Thumbprint"] == old.thumbprint


def test_disabled_unknown_and_server_certificates_cannot_renew_and_nothing_changes(server: RunningServer,
                                                                                   tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    disabled = server.generate("renew-disabled")
    edit = server.admin().post(f"{server.url}/admin/certificates/edit", json={
        "Thumbprint": disabled.thumbprint, "Name": "renew-disabled", "SecurityClearance": "ValidUser",
        "Permissions": {}, "Disabled": True})
    assert edit.status_code == 201, edit.text
    unknown = issue(roost_ca(server.certs_dir), "renew-unknown")  # Roost's CA, but never registered
    unknown_pem = tmp_path / "unknown.pem"
    unknown_pem.write_bytes(unknown.certificate.public_bytes(serialization.Encoding.PEM) + _key_pem(unknown.key))
    own = tmp_path / "server-as-client.pem"
    own.write_bytes((server.certs_dir / "server.crt").read_bytes() + (server.certs_dir / "server.key").read_bytes())
    before = _count(server)
    for pem, status, message in [(disabled.pem_path, 403, ""), (unknown_pem, 403, ""),
                                 (own, 403, "roost server-cert renew")]:
        response = _renew(server.session(pem), server, key)
        assert response.status_code == status, response.text
        assert message in response.json()["Message"]
    assert _count(server) == before


def test_an_expired_certificate_cannot_renew(server: RunningServer, tmp_path: Path) -> None:
    expired = issue(roost_ca(server.certs_dir), "renew-expired", days=-1,
                    not_before=dt.datetime.now(dt.UTC) - dt.timedelta(days=10))
    upload = server.admin().put(f"{server.url}/admin/certificates", json={
        "Name": "renew-expired", "SecurityClearance": "ValidUser", "Permissions": {},
        "Certificate": base64.b64encode(expired.certificate.public_bytes(serialization.Encoding.DER)).decode()})
    assert upload.status_code == 201, upload.text
    path = tmp_path / "expired.pem"
    path.write_bytes(expired.certificate.public_bytes(serialization.Encoding.PEM) + _key_pem(expired.key))
    before = _count(server)
    response = _renew(server.session(path), server, ec.generate_private_key(ec.SECP256R1()))
    assert response.status_code in (401, 403), response.text
    assert _count(server) == before


def test_roost_certs_renew_writes_the_successor(server: RunningServer, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from roost.cli.main import main

    old = server.generate("cli-renew", "ValidUser", {"cli-renew-db": "Admin"}, directory=tmp_path)
    result = CliRunner().invoke(main, ["certs", "renew", "--url", server.url, "--cert", str(old.pem_path),
                                       "--ca", str(server.ca_pem), "--out", str(tmp_path / "new")])
    assert result.exit_code == 0, result.output
    me = server.session(tmp_path / "new" / "cli-renew.pem").get(f"{server.url}/certificates/whoami").json()
    assert me["Name"] == "cli-renew" and me["Permissions"] == {"cli-renew-db": "Admin"}
    assert me["Thumbprint"] != old.thumbprint
    own = tmp_path / "server-as-client.pem"
    own.write_bytes((server.certs_dir / "server.crt").read_bytes() + (server.certs_dir / "server.key").read_bytes())
    refused = CliRunner().invoke(main, ["certs", "renew", "--url", server.url, "--cert", str(own),
                                        "--ca", str(server.ca_pem), "--out", str(tmp_path / "server")])
    assert refused.exit_code != 0 and "roost server-cert renew" in refused.output
    assert not (tmp_path / "server").exists()  # nothing written when the server refuses


# One successor per certificate, and retirement once unused ---------------------------------------------------


def _registered(server: RunningServer, thumbprint: str) -> bool:
    found = server.admin().get(f"{server.url}/admin/certificates", params={"thumbprint": thumbprint})
    assert found.status_code in (200, 404), found.text
    return found.status_code == 200 and bool(found.json()["Results"])


def _whoami(server: RunningServer, pem: Path) -> int:
    try:
        return server.session(pem).get(f"{server.url}/certificates/whoami").status_code
    except requests.exceptions.SSLError:
        return 0  # no longer trusted in the handshake at all


def test_a_certificate_has_one_successor_in_use_and_an_unused_one_is_replaced(server: RunningServer,
                                                                              tmp_path: Path) -> None:
    old = server.generate("one-successor", "ValidUser", {"one-db": "Read"})
    session = server.session(old.pem_path)
    first_key = ec.generate_private_key(ec.SECP256R1())
    first = _renew(session, server, first_key)
    assert first.status_code == 201, first.text
    before = _count(server)
    # Renewing again before the first successor was ever used: the unused one is replaced, not added to.
    second_key = ec.generate_private_key(ec.SECP256R1())
    second = _renew(session, server, second_key)
    assert second.status_code == 201, second.text
    assert _count(server) == before
    assert not _registered(server, first.headers["X-Roost-Thumbprint"])
    second_pem = _save(tmp_path, "second", second.content, second_key)
    assert server.session(second_pem).get(f"{server.url}/certificates/whoami").status_code == 200  # now in use
    third = _renew(session, server, ec.generate_private_key(ec.SECP256R1()))
    assert third.status_code == 409, third.text
    assert second.headers["X-Roost-Thumbprint"] in third.json()["Message"]
    assert _count(server) == before
    # The successor itself may renew (a chain, one link at a time).
    assert _renew(server.session(second_pem), server, ec.generate_private_key(ec.SECP256R1())).status_code == 201


def test_a_renewed_certificate_is_retired_once_unused_for_the_configured_days(tmp_path: Path) -> None:
    from conftest import start_server

    data_dir = tmp_path / "data"
    server = start_server(data_dir)
    try:
        old = server.generate("retiring", "ValidUser", {"retire-db": "Read"}, directory=tmp_path)
        key = ec.generate_private_key(ec.SECP256R1())
        answer = _renew(server.session(old.pem_path), server, key)
        assert answer.status_code == 201, answer.text
        new_pem = _save(tmp_path, "retiring-new", answer.content, key)
        assert _whoami(server, new_pem) == 200
    finally:
        server.stop()
    day = 24 * 3600
    # (Listing the old certificate does not use it; presenting it would, and would restart its quiet days.)
    for offset, args, old_kept in ((3 * day, [], True),  # within the default 7 days: both stay
                                   (8 * day, ["--Security.Certificate.Renewal.RetireUnusedDays=0"], True),  # off
                                   (8 * day, [], False)):  # unused for 8 days: the old one is retired
        server = start_server(data_dir, f"--test_clock_offset_seconds={offset}", *args)
        try:
            listed = _registered(server, old.thumbprint)
            deadline = time.monotonic() + 10  # the schedule runs just after start
            while listed and not old_kept and time.monotonic() < deadline:
                time.sleep(0.1)
                listed = _registered(server, old.thumbprint)
            assert bool(listed) == old_kept, (offset, args)
            assert _whoami(server, new_pem) == 200
            if not old_kept:
                assert _whoami(server, old.pem_path) != 200
        finally:
            server.stop()
    audit = (data_dir / "audit.log").read_text()
    assert '"certificate.retired"' in audit and old.thumbprint in audit


def _upload(server: RunningServer, name: str, days: int, age_days: int, directory: Path) -> Path:
    """A certificate of Roost's CA, ``age_days`` old with ``days`` left, registered by upload; its PEM + key."""
    issued = issue(roost_ca(server.certs_dir), name, days=days,
                   not_before=dt.datetime.now(dt.UTC) - dt.timedelta(days=age_days))
    upload = server.admin().put(f"{server.url}/admin/certificates", json={
        "Name": name, "SecurityClearance": "ValidUser", "Permissions": {"daemon-db": "Read"},
        "Certificate": base64.b64encode(issued.certificate.public_bytes(serialization.Encoding.DER)).decode()})
    assert upload.status_code == 201, upload.text
    path = directory / f"{name}.pem"
    path.write_bytes(issued.certificate.public_bytes(serialization.Encoding.PEM) + _key_pem(issued.key))
    path.chmod(0o600)
    return path


def _daemon(server: RunningServer, pem: Path, out: Path, marker: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "roost", "certs", "renew", "--daemon", "--url", server.url, "--cert", str(pem),
         "--ca", str(server.ca_pem), "--out", str(out), "--reload", f"echo reloaded >> {marker}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _lines_until(process: subprocess.Popen[str], fragment: str, timeout: float = 60.0) -> list[str]:
    assert process.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip())
        if fragment in line:
            return lines
    raise AssertionError(f"no line with {fragment!r}: {lines}")


def test_renew_daemon_renews_past_two_thirds_of_the_lifetime_and_runs_the_reload_command(
        server: RunningServer, tmp_path: Path) -> None:
    pem = _upload(server, "daemon-due", days=5, age_days=25, directory=tmp_path)  # 25 of 30 days used
    marker = tmp_path / "reloaded"
    process = _daemon(server, pem, tmp_path / "out", marker)
    try:
        lines = _lines_until(process, "Next renewal")  # renewed at once, then waits for the successor's turn
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert any("Wrote" in line for line in lines), lines
    assert marker.read_text() == "reloaded\n"  # the reload command ran once, after the renewal
    successor = tmp_path / "out" / "daemon-due.pem"
    me = server.session(successor).get(f"{server.url}/certificates/whoami").json()
    assert me["Name"] == "daemon-due" and me["Permissions"] == {"daemon-db": "Read"}
    assert me["Thumbprint"] != load_thumbprint(pem)
    assert oct(successor.stat().st_mode & 0o777) == "0o600"


def test_renew_daemon_leaves_a_certificate_alone_before_two_thirds_of_its_lifetime(
        server: RunningServer, tmp_path: Path) -> None:
    pem = _upload(server, "daemon-early", days=25, age_days=5, directory=tmp_path)  # 5 of 30 days used
    marker = tmp_path / "reloaded"
    before = _count(server)
    process = _daemon(server, pem, tmp_path / "out", marker)
    try:
        lines = _lines_until(process, "Next renewal")
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert not any("Wrote" in line for line in lines), lines
    assert not marker.exists() and not (tmp_path / "out").exists()
    assert _count(server) == before


def load_thumbprint(pem: Path) -> str:
    return x509.load_pem_x509_certificate(pem.read_bytes()).fingerprint(hashes.SHA1()).hex().upper()


# Rotate in one click (POST /admin/certificates/rotate) -----------------------------------------------------------


def _rotate(session: requests.Session, server: RunningServer, thumbprint: str) -> requests.Response:
    return session.post(f"{server.url}/admin/certificates/rotate", json={"Thumbprint": thumbprint})


def test_rotation_issues_a_successor_with_the_same_settings_and_both_work(server: RunningServer,
                                                                          tmp_path: Path) -> None:
    from conftest import unpack_package

    secret = server.admin().get(f"{server.url}/admin/certificates/2fa/generate").json()["Secret"]
    old = server.generate("rotated", "ValidUser", {"rotate-db": "ReadWrite"}, ExpirationMonths=6,
                          TwoFactorAuthenticationKey=secret)
    before = _count(server)
    answer = _rotate(server.admin(), server, old.thumbprint)
    assert answer.status_code == 200, answer.text
    assert "rotated.zip" in answer.headers["Content-Disposition"]
    new = unpack_package(answer.content, "rotated", tmp_path)
    assert new.thumbprint == answer.headers["X-Roost-Thumbprint"] != old.thumbprint
    assert _count(server) == before + 1
    entry = server.admin().get(f"{server.url}/admin/certificates", params={"thumbprint": new.thumbprint}).json()
    listed = entry["Results"][0]
    assert (listed["Name"], listed["SecurityClearance"], listed["Permissions"], listed["HasTwoFactor"]) == (
        "rotated", "ValidUser", {"rotate-db": "ReadWrite"}, True)
    lifetime = x509.load_pem_x509_certificate(zip_member(answer.content, "rotated.crt"))
    assert 175 <= (lifetime.not_valid_after_utc - dt.datetime.now(dt.UTC)).days <= 190  # the same six months
    # Both work (each asks for its 2FA session, as the old one did).
    assert server.session(new.pem_path).get(f"{server.url}/certificates/whoami").status_code == 428
    assert server.session(old.pem_path).get(f"{server.url}/certificates/whoami").status_code == 428
    history = server.admin().get(f"{server.url}/admin/certificates/history",
                                 params={"thumbprint": new.thumbprint}).json()["History"]
    assert [(h["Event"], h.get("RenewalOf")) for h in history] == [("certificate.generated", old.thumbprint)]


def zip_member(package: bytes, name: str) -> bytes:
    import io
    import zipfile

    with zipfile.ZipFile(io.BytesIO(package)) as archive:
        return archive.read(name)


def test_rotation_is_refused_beyond_the_callers_clearance_and_changes_nothing(server: RunningServer) -> None:
    operator = server.generate("rotating-operator", "Operator")
    admin_cert = server.generate("rotated-admin", "ClusterAdmin")
    user = server.generate("rotating-user", "ValidUser", {"db": "Admin"})
    before = _count(server)
    as_operator = _rotate(server.session(operator.pem_path), server, admin_cert.thumbprint)
    assert as_operator.status_code == 403, as_operator.text
    assert _rotate(server.session(user.pem_path), server, user.thumbprint).status_code == 403  # Operator route
    assert _rotate(server.admin(), server, "0" * 40).status_code == 404
    own_server = server.admin().get(f"{server.url}/admin/certificates").json()["LoadedServerCert"]
    assert _rotate(server.admin(), server, own_server).status_code == 403
    assert server.admin().post(f"{server.url}/admin/certificates/rotate", json={"Nope": 1}).status_code == 400
    assert _count(server) == before
    # An Operator may rotate what it may edit.
    assert _rotate(server.session(operator.pem_path), server, user.thumbprint).status_code == 200


def test_renewals_racing_on_two_workers_leave_one_successor(tmp_path: Path) -> None:
    """The one-successor rule holds across processes: concurrent renewals of one certificate, spread over two
    workers, end with the certificate and exactly one successor (each renewal replaces the unused one before)."""
    from concurrent.futures import ThreadPoolExecutor

    from conftest import start_server

    server = start_server(tmp_path / "data", "--workers", "2")
    try:
        old = server.generate("raced", "ValidUser", {"race-db": "Read"}, directory=tmp_path)

        def renew_once(_: int) -> int:
            session = server.session(old.pem_path)  # a new connection each: the kernel spreads them over workers
            try:
                return _renew(session, server, ec.generate_private_key(ec.SECP256R1())).status_code
            finally:
                session.close()

        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(renew_once, range(16)))
        assert set(statuses) <= {201, 503} and 201 in statuses, statuses
        listed = server.admin().get(f"{server.url}/admin/certificates", params={"name": "raced"}).json()["Results"]
        assert len(listed) == 2, [c["Thumbprint"] for c in listed]  # the certificate and one successor
    finally:
        server.stop()
