"""Two-factor authentication against a real server process: codes are computed from the key with pyotp, as an
authenticator app does, and every acceptance has its refusal beside it."""

from __future__ import annotations

import re
import sqlite3
import time
from pathlib import Path

import numpy as np
import pyotp
import pytest
import requests
import zxingcpp

from conftest import ClientCertificate, RunningServer, start_server

MESSAGE_428 = (
    "The supplied client certificate 'CN={name} (Thumbprint: {tp})' requires two factor authorization to "
    "be valid. Please POST the relevant TOTP value to /authentication/2fa"
)
DENIED = {"Type": "InvalidAuth", "Message": "Access to the server was denied.", "Reason": "TwoFactorInvalidLimit"}


def code(secret: str, offset: float = 0.0) -> str:
    """The code an authenticator app shows ``offset`` seconds from now."""
    return pyotp.TOTP(secret).at(time.time() + offset)


def enrol(
    server: RunningServer, name: str, clearance: str = "ValidUser", permissions: dict[str, str] | None = None
) -> tuple[ClientCertificate, str]:
    secret_response = server.admin().get(f"{server.url}/admin/certificates/2fa/generate")
    assert secret_response.status_code == 200, secret_response.text
    secret = secret_response.json()["Secret"]
    cert = server.generate(name, clearance, permissions, TwoFactorAuthenticationKey=secret)
    return cert, secret


def login(
    server: RunningServer,
    session: requests.Session,
    token: object,
    *,
    limits: bool = False,
    minutes: int | None = None,
) -> requests.Response:
    params: dict[str, str] = {"hasLimits": "true" if limits else "false"}
    if minutes is not None:
        params["sessionDurationInMin"] = str(minutes)
    return session.post(f"{server.url}/authentication/2fa", params=params, json={"Token": token})


def whoami(server: RunningServer, session: requests.Session) -> requests.Response:
    return session.get(f"{server.url}/certificates/whoami")


def test_generate_returns_a_fresh_160_bit_base32_secret_to_operators_only(server: RunningServer) -> None:
    first = server.admin().get(f"{server.url}/admin/certificates/2fa/generate")
    second = server.admin().get(f"{server.url}/admin/certificates/2fa/generate")
    assert first.status_code == 200 and first.headers["Cache-Control"] == "no-store"
    secret = first.json()["Secret"]
    assert re.fullmatch(r"[A-Z2-7]{32}", secret)
    assert secret != second.json()["Secret"]
    user = server.generate("2fa-generate-user")
    refused = server.session(user.pem_path).get(f"{server.url}/admin/certificates/2fa/generate")
    assert refused.status_code == 403
    assert "Secret" not in refused.text


def test_no_session_is_428_and_a_certificate_without_a_key_passes(server: RunningServer) -> None:
    cert, _ = enrol(server, "2fa-no-session")
    refused = whoami(server, server.session(cert.pem_path))
    assert refused.status_code == 428
    assert refused.json() == {
        "Type": "InvalidAuth",
        "Message": MESSAGE_428.format(name="2fa-no-session", tp=cert.thumbprint),
        "Reason": "TwoFactorRequired",
    }
    plain = server.generate("2fa-plain")
    assert whoami(server, server.session(plain.pem_path)).status_code == 200


def test_right_code_opens_a_session_for_every_client_without_limits_and_a_wrong_one_does_not(
    server: RunningServer,
) -> None:
    cert, secret = enrol(server, "2fa-all-clients", permissions={"2fa-db": "Read"})
    app, browser = server.session(cert.pem_path), server.session(cert.pem_path)
    wrong = login(server, app, "000000" if code(secret) != "000000" else "111111")
    assert wrong.status_code == 406
    assert wrong.json()["Error"] == f"Wrong token provided for {cert.thumbprint} (2fa-all-clients)"
    assert whoami(server, app).status_code == 428

    opened = login(server, app, code(secret))
    assert opened.status_code == 202, opened.text
    assert opened.content == b"" and "Set-Cookie" not in opened.headers
    # Every client of the certificate passes: the one that logged in and another with no shared state.
    assert whoami(server, app).status_code == 200
    assert whoami(server, browser).status_code == 200
    assert whoami(server, server.session(cert.pem_path)).json()["HasTwoFactor"] is True
    # 2FA opens the door; authorization still applies behind it.
    assert server.session(cert.pem_path).get(f"{server.url}/admin/databases").status_code == 403


def test_with_limits_only_the_browser_holding_the_cookie_passes(server: RunningServer) -> None:
    cert, secret = enrol(server, "2fa-this-browser")
    browser, other = server.session(cert.pem_path), server.session(cert.pem_path)
    opened = login(server, browser, code(secret), limits=True, minutes=30)
    assert opened.status_code == 202, opened.text
    set_cookie = opened.headers["Set-Cookie"]
    assert set_cookie.startswith("2fa-cookie=")
    for attribute in ("HttpOnly", "Secure", "SameSite=Strict", "Max-Age=1800", "Path=/"):
        assert attribute in set_cookie.split("; ")
    assert browser.cookies.get("2fa-cookie")

    assert whoami(server, browser).status_code == 200
    refused = whoami(server, other)
    assert refused.status_code == 403
    assert refused.json() == DENIED
    forged = requests.Session()
    forged.verify, forged.cert = str(server.ca_pem), str(cert.pem_path)
    forged.headers["Cookie"] = "2fa-cookie=" + "A" * 43
    assert whoami(server, forged).status_code == 403
    # A second login replaces the session (RavenDB's NewOtpOverridesOld): the first browser's cookie
    # stops working.
    again = login(server, other, code(secret, offset=30), limits=True)
    assert again.status_code == 202, again.text
    assert whoami(server, other).status_code == 200
    assert whoami(server, browser).json() == DENIED


def test_logout_ends_the_session_for_every_client(server: RunningServer) -> None:
    cert, secret = enrol(server, "2fa-logout")
    first, second = server.session(cert.pem_path), server.session(cert.pem_path)
    assert login(server, first, code(secret)).status_code == 202
    assert whoami(server, second).status_code == 200
    ended = second.delete(f"{server.url}/authentication/2fa")
    assert ended.status_code == 204
    assert whoami(server, first).status_code == 428
    assert whoami(server, second).status_code == 428


def test_a_code_is_accepted_once(server: RunningServer) -> None:
    cert, secret = enrol(server, "2fa-replay")
    client = server.session(cert.pem_path)
    token = code(secret)
    assert login(server, client, token).status_code == 202
    assert client.delete(f"{server.url}/authentication/2fa").status_code == 204
    replay = login(server, server.session(cert.pem_path), token)
    assert replay.status_code == 406
    assert "already used" in replay.json()["Error"]
    assert "TriesLeft" not in replay.json()  # a replay is not a guess: it counts nothing
    assert whoami(server, client).status_code == 428
    # The next code (the app's next 30-second step) is accepted.
    assert login(server, client, code(secret, offset=30)).status_code == 202
    assert whoami(server, client).status_code == 200


def test_a_code_as_a_number_is_accepted_and_malformed_tokens_are_400(server: RunningServer) -> None:
    cert, secret = enrol(server, "2fa-number")
    client = server.session(cert.pem_path)
    for bad in ("12345", "1234567", "abcdef", None, True, -1, 1_000_000):
        response = login(server, client, bad)
        assert response.status_code == 400, (bad, response.text)
        assert "6-digit code" in response.json()["Error"]
    no_body = client.post(f"{server.url}/authentication/2fa?hasLimits=false")
    assert no_body.status_code == 400
    assert whoami(server, client).status_code == 428
    assert login(server, client, int(code(secret))).status_code == 202  # leading zeros restored
    assert whoami(server, client).status_code == 200


def test_the_sixth_wrong_code_is_locked_out_even_when_right(server: RunningServer) -> None:
    cert, secret = enrol(server, "2fa-lockout")
    client = server.session(cert.pem_path)
    right = code(secret)
    wrong = next(
        c for c in ("000000", "111111", "222222") if c not in {code(secret, o) for o in (-30, 0, 30)}
    )
    for attempt in range(5):
        response = login(server, client, wrong)
        assert response.status_code == 406, (attempt, response.text)
        assert response.json()["TriesLeft"] == 4 - attempt  # what the Studio shows: "N tries left"
    locked = login(server, client, right)
    assert locked.status_code == 429
    assert "TriesLeft" not in locked.json()
    seconds = int(locked.headers["Retry-After"])
    assert 240 < seconds <= 300
    assert f"locked for {seconds} more seconds" in locked.json()["Error"]
    assert whoami(server, client).status_code == 428
    # Other certificates are not affected by this one's lockout.
    other, other_secret = enrol(server, "2fa-not-locked")
    assert login(server, server.session(other.pem_path), code(other_secret)).status_code == 202


def test_four_wrong_codes_then_the_right_one_passes_and_resets_the_count(server: RunningServer) -> None:
    cert, secret = enrol(server, "2fa-four-wrong")
    client = server.session(cert.pem_path)
    wrong = next(
        c for c in ("000000", "111111", "222222") if c not in {code(secret, o) for o in (-30, 0, 30, 60)}
    )
    for _ in range(4):
        assert login(server, client, wrong).status_code == 406
    assert login(server, client, code(secret)).status_code == 202
    for _ in range(4):
        assert login(server, client, wrong).status_code == 406
    assert login(server, client, code(secret, offset=30)).status_code == 202


def test_login_refusals_use_ravendb_messages(server: RunningServer) -> None:
    cert, secret = enrol(server, "2fa-refusals")
    client = server.session(cert.pem_path)
    too_long = login(server, client, code(secret), minutes=24 * 60 + 1)
    assert too_long.status_code == 400
    assert too_long.json()["Error"] == (
        "Requested two factor authentication duration is higher than maximum session length (1440)"
    )
    for bad in ("0", "-5", "ten"):
        response = client.post(
            f"{server.url}/authentication/2fa",
            params={"sessionDurationInMin": bad},
            json={"Token": code(secret)},
        )
        assert response.status_code == 400, bad
    assert (
        client.post(
            f"{server.url}/authentication/2fa", params={"hasLimits": "maybe"}, json={"Token": code(secret)}
        ).status_code
        == 400
    )
    assert whoami(server, client).status_code == 428  # none of the refused requests opened a session

    anonymous = login(server, server.session(None), "123456")
    assert anonymous.status_code == 400
    assert anonymous.json()["Error"] == (
        "Two factor authentication requires that you'll use a client certificate, but none was provided."
    )
    plain = server.generate("2fa-without-key")
    not_set_up = login(server, server.session(plain.pem_path), "123456")
    assert not_set_up.status_code == 400
    assert not_set_up.json()["Error"] == (
        f"The certificate {plain.thumbprint} (2fa-without-key) is not set up for two factor authentication"
    )
    assert (
        server.admin()
        .delete(f"{server.url}/admin/certificates", params={"thumbprint": plain.thumbprint})
        .status_code
        == 204
    )
    unknown = login(server, server.session(plain.pem_path), "123456")
    assert unknown.status_code == 400
    assert f"The certificate {plain.thumbprint} (" in unknown.json()["Error"]
    assert unknown.json()["Error"].endswith("is not known to the server")


def test_configuration_gives_the_default_and_maximum_durations(server: RunningServer) -> None:
    response = server.session(None).get(f"{server.url}/authentication/2fa/configuration")
    assert response.status_code == 200
    assert response.json() == {
        "DefaultTwoFactorSessionDurationInMin": 120,
        "MaxTwoFactorSessionDurationInMin": 1440,
    }


def test_durations_come_from_the_settings(tmp_path: Path) -> None:
    running = start_server(
        tmp_path / "data",
        "--Security.TwoFactor.DefaultSessionDurationInMin=15",
        "--Security.TwoFactor.MaxSessionDurationInMin=60",
    )
    try:
        config = running.session(None).get(f"{running.url}/authentication/2fa/configuration").json()
        assert config == {"DefaultTwoFactorSessionDurationInMin": 15, "MaxTwoFactorSessionDurationInMin": 60}
        cert, secret = enrol(running, "2fa-settings")
        client = running.session(cert.pem_path)
        assert login(running, client, code(secret), minutes=61).status_code == 400
        opened = login(running, client, code(secret), limits=True)
        assert opened.status_code == 202
        assert "Max-Age=900" in opened.headers["Set-Cookie"].split("; ")  # the default, 15 minutes
    finally:
        running.stop()


def test_the_key_never_appears_in_a_later_response_or_in_the_log(server: RunningServer) -> None:
    cert, secret = enrol(server, "2fa-secret-keeper", "Operator")
    client = server.session(cert.pem_path)
    token = code(secret)
    assert login(server, client, token).status_code == 202
    admin = server.admin()
    responses = [
        admin.get(f"{server.url}/admin/certificates"),
        admin.get(f"{server.url}/admin/certificates", params={"thumbprint": cert.thumbprint}),
        admin.get(f"{server.url}/admin/certificates", params={"secondary": "true", "metadataOnly": "false"}),
        whoami(server, client),
        client.get(f"{server.url}/admin/certificates"),
    ]
    for response in responses:
        assert response.status_code == 200, response.text
        assert secret not in response.text
        assert "TwoFactorAuthenticationKey" not in response.text
    listed = responses[1].json()["Results"][0]
    assert listed["HasTwoFactor"] is True
    wrong = "000000" if token != "000000" else "111111"
    assert login(server, client, wrong).status_code == 406
    time.sleep(0.3)  # the server's log is read by a background thread
    log = "\n".join(server.output)
    assert f"2FA: session opened for {cert.thumbprint}" in log
    assert f"2FA: wrong code for {cert.thumbprint}" in log
    assert secret not in log and token not in log.replace(cert.thumbprint, "")


def test_qr_code_decodes_to_the_exact_otpauth_uri(server: RunningServer) -> None:
    secret = server.admin().get(f"{server.url}/admin/certificates/2fa/generate").json()["Secret"]
    name = "Alice: ops & on-call"
    response = server.admin().post(
        f"{server.url}/admin/certificates/2fa/qr", json={"Secret": secret, "Name": name}
    )
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == "image/svg+xml"
    assert response.headers["Cache-Control"] == "no-store"
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]
    assert "<script" not in response.text
    decoded = decode_svg_qr(response.text)
    assert (
        decoded == f"otpauth://totp/localhost:Alice%3A%20ops%20%26%20on-call?secret={secret}&issuer=localhost"
    )
    # And the URI is one an authenticator understands: pyotp parses it back to the same key and label.
    parsed = pyotp.parse_uri(decoded)
    assert parsed.secret == secret and parsed.name == name and parsed.issuer == "localhost"

    explicit = server.admin().post(
        f"{server.url}/admin/certificates/2fa/qr",
        json={"Secret": secret, "Name": "bob", "Issuer": "db.example.com"},
    )
    assert decode_svg_qr(explicit.text) == (
        f"otpauth://totp/db.example.com:bob?secret={secret}&issuer=db.example.com"
    )


def test_qr_refuses_bad_input_and_non_operators(server: RunningServer) -> None:
    secret = server.admin().get(f"{server.url}/admin/certificates/2fa/generate").json()["Secret"]
    admin = server.admin()
    for body in (
        {"Name": "x"},
        {"Secret": "not base32!", "Name": "x"},
        {"Secret": "ABCDEFGH", "Name": "x"},
        {"Secret": secret},
        {"Secret": secret, "Name": "x" * 201},
        {"Secret": secret, "Name": "x", "Extra": 1},
    ):
        response = admin.post(f"{server.url}/admin/certificates/2fa/qr", json=body)
        assert response.status_code == 400, body
        assert response.headers["Content-Type"].startswith("application/json")
    # The key never travels in a URL: there is no GET form of this route.
    as_get = admin.get(f"{server.url}/admin/certificates/2fa/qr", params={"secret": secret, "name": "x"})
    assert as_get.status_code in (404, 405) and secret not in as_get.text
    user = server.generate("2fa-qr-user")
    refused = server.session(user.pem_path).post(
        f"{server.url}/admin/certificates/2fa/qr", json={"Secret": secret, "Name": "x"}
    )
    assert refused.status_code == 403


def test_edit_keeps_the_key_and_the_session_and_can_remove_or_replace_the_key(server: RunningServer) -> None:
    cert, secret = enrol(server, "2fa-edit", permissions={"2fa-edit-db": "Read"})
    client = server.session(cert.pem_path)
    assert login(server, client, code(secret)).status_code == 202
    admin = server.admin()
    body = {
        "Thumbprint": cert.thumbprint,
        "Name": "2fa-edit-renamed",
        "SecurityClearance": "ValidUser",
        "Permissions": {"2fa-edit-db": "ReadWrite"},
    }
    assert admin.post(f"{server.url}/admin/certificates/edit", json=body).status_code == 201
    me = whoami(server, client)
    assert me.status_code == 200 and me.json()["HasTwoFactor"] is True  # the key and the session stayed

    # A new key ends the session opened with the old one.
    new_secret = admin.get(f"{server.url}/admin/certificates/2fa/generate").json()["Secret"]
    assert (
        admin.post(
            f"{server.url}/admin/certificates/edit", json={**body, "TwoFactorAuthenticationKey": new_secret}
        ).status_code
        == 201
    )
    assert whoami(server, client).status_code == 428
    assert (
        login(server, client, code(secret, offset=30)).status_code == 406
    )  # the old key's codes are wrong now
    assert login(server, client, code(new_secret, offset=30)).status_code == 202

    removed = admin.post(
        f"{server.url}/admin/certificates/edit", params={"deleteTwoFactorConfiguration": "true"}, json=body
    )
    assert removed.status_code == 201
    assert (
        admin.post(f"{server.url}/authentication/2fa?hasLimits=false", json={"Token": "123456"}).status_code
        == 400
    )  # the admin certificate has no key either
    assert client.delete(f"{server.url}/authentication/2fa").status_code == 204
    me = whoami(server, client)
    assert me.status_code == 200 and me.json()["HasTwoFactor"] is False  # no key: no 2FA required


def test_upload_with_a_key_requires_2fa(server: RunningServer, tmp_path: Path) -> None:
    import base64

    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    cert = server.generate("2fa-upload-source", directory=tmp_path)
    pem = cert.pem_path.read_bytes()
    der = x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)
    admin = server.admin()
    assert (
        admin.delete(f"{server.url}/admin/certificates", params={"thumbprint": cert.thumbprint}).status_code
        == 204
    )
    secret = admin.get(f"{server.url}/admin/certificates/2fa/generate").json()["Secret"]
    bad = admin.put(
        f"{server.url}/admin/certificates",
        json={
            "Name": "2fa-uploaded",
            "Certificate": base64.b64encode(der).decode(),
            "SecurityClearance": "ValidUser",
            "Permissions": {},
            "TwoFactorAuthenticationKey": "not-base32!",
        },
    )
    assert bad.status_code == 400
    uploaded = admin.put(
        f"{server.url}/admin/certificates",
        json={
            "Name": "2fa-uploaded",
            "Certificate": base64.b64encode(der).decode(),
            "SecurityClearance": "ValidUser",
            "Permissions": {},
            "TwoFactorAuthenticationKey": secret,
        },
    )
    assert uploaded.status_code == 201, uploaded.text
    client = server.session(cert.pem_path)
    assert whoami(server, client).status_code == 428
    assert login(server, client, code(secret)).status_code == 202
    assert whoami(server, client).status_code == 200


def test_sessions_and_lockouts_survive_a_restart_and_end_on_time(tmp_path: Path) -> None:
    data = tmp_path / "data"
    running = start_server(data)
    try:
        open_cert, open_secret = enrol(running, "2fa-restart-open")
        locked_cert, locked_secret = enrol(running, "2fa-restart-locked")
        short_cert, short_secret = enrol(running, "2fa-restart-short")
        assert (
            login(running, running.session(open_cert.pem_path), code(open_secret), minutes=10).status_code
            == 202
        )
        assert (
            login(running, running.session(short_cert.pem_path), code(short_secret), minutes=1).status_code
            == 202
        )
        wrong = next(
            c
            for c in ("000000", "111111", "222222")
            if c not in {code(locked_secret, o) for o in range(-30, 400, 30)}
        )
        for _ in range(5):
            assert login(running, running.session(locked_cert.pem_path), wrong).status_code == 406
    finally:
        running.stop()

    running = start_server(data)  # the same clock: everything still holds
    try:
        assert whoami(running, running.session(open_cert.pem_path)).status_code == 200
        assert whoami(running, running.session(short_cert.pem_path)).status_code == 200
        assert login(running, running.session(locked_cert.pem_path), code(locked_secret)).status_code == 429
    finally:
        running.stop()

    # Three minutes later (the server's clock only; see Settings.test_clock_offset_seconds).
    running = start_server(data, env={"ROOST_TEST_CLOCK_OFFSET_SECONDS": "180"})
    try:
        assert whoami(running, running.session(open_cert.pem_path)).status_code == 200
        assert whoami(running, running.session(short_cert.pem_path)).status_code == 428  # a 1-minute session
        assert (
            login(running, running.session(locked_cert.pem_path), code(locked_secret, 180)).status_code == 429
        )
    finally:
        running.stop()

    # Eleven minutes later: the 10-minute session has ended and the 5-minute lockout is over.
    running = start_server(data, env={"ROOST_TEST_CLOCK_OFFSET_SECONDS": "660"})
    try:
        assert whoami(running, running.session(open_cert.pem_path)).status_code == 428
        client = running.session(locked_cert.pem_path)
        assert login(running, client, code(locked_secret, 660)).status_code == 202
        assert whoami(running, client).status_code == 200
    finally:
        running.stop()


def test_storage_keeps_digests_and_deleting_a_certificate_drops_its_state(
    fresh_server: RunningServer,
) -> None:
    server = fresh_server
    cert, secret = enrol(server, "2fa-storage")
    client = server.session(cert.pem_path)
    opened = login(server, client, code(secret), limits=True)
    assert opened.status_code == 202
    cookie = client.cookies["2fa-cookie"]
    database = server.data_dir / "roost.db"

    def state_row() -> str | None:
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
            row = db.execute(
                "SELECT state FROM two_factor WHERE thumbprint = ?", (cert.thumbprint,)
            ).fetchone()
        return row[0] if row else None

    stored = state_row()
    assert stored is not None and '"HasLimits": true' in stored
    assert cookie not in stored and secret not in stored
    assert (
        server.admin()
        .delete(f"{server.url}/admin/certificates", params={"thumbprint": cert.thumbprint})
        .status_code
        == 204
    )
    assert state_row() is None


def decode_svg_qr(svg: str) -> str:
    """Rasterise segno's SVG (one path of horizontal runs: M/m moves and h lines, under ``scale(k)``) and let
    zxing-cpp, an independent decoder, read it."""
    match = re.search(r'<svg[^>]*width="(\d+)"[^>]*height="(\d+)"', svg)
    assert match, svg[:200]
    scale_match = re.search(r'transform="scale\((\d+)\)"', svg)
    scale = int(scale_match.group(1)) if scale_match else 1
    size = int(match.group(1)) // scale
    path = re.search(r'\sd="([^"]+)"', svg)
    assert path
    image = np.full((size, size), 255, dtype=np.uint8)
    x = y = 0.0
    for command, a, b in re.findall(r"([MmHhVv])\s*(-?[\d.]+)(?:[ ,](-?[\d.]+))?", path.group(1)):
        if command == "M":
            x, y = float(a), float(b)
        elif command == "m":
            x, y = x + float(a), y + float(b)
        elif command in "hH":
            end = x + float(a) if command == "h" else float(a)
            image[int(y - 0.5), int(min(x, end)) : int(max(x, end))] = 0
            x = end
        else:
            raise AssertionError(f"unexpected path command {command}")
    big = np.kron(image, np.ones((8, 8), dtype=np.uint8))
    results = zxingcpp.read_barcodes(big)
    assert len(results) == 1, results
    return str(results[0].text)


@pytest.mark.parametrize(
    "host,issuer",
    [
        ("a.foo.example.com:8443", "foo.example.com"),
        ("localhost:8443", "localhost"),
        ("db.example", "db.example"),
        ("[::1]:8443", "::1"),
        ("127.0.0.1:8443", "127.0.0.1"),
    ],
)
def test_issuer_is_the_host_without_its_first_label(host: str, issuer: str) -> None:
    from roost.security.twofactor import issuer_for_host

    assert issuer_for_host(host) == issuer


# Administrators: sessions and lockouts (issue 17) -----------------------------------------------------------------


def _overview(server: RunningServer) -> dict[str, dict]:
    response = server.admin().get(f"{server.url}/admin/certificates/2fa/sessions")
    assert response.status_code == 200, response.text
    return {c["Name"]: c for c in response.json()["Certificates"]}


def test_an_administrator_sees_sessions_ends_one_and_lifts_a_lockout(server: RunningServer) -> None:
    holder, holder_secret = enrol(server, "2fa-admin-session")
    holder_client = server.session(holder.pem_path)
    assert login(server, holder_client, code(holder_secret)).status_code == 202
    locked, locked_secret = enrol(server, "2fa-admin-locked")
    locked_client = server.session(locked.pem_path)
    wrong = next(c for c in ("000000", "111111", "222222")
                 if c not in {code(locked_secret, o) for o in (-30, 0, 30, 60)})
    for _ in range(5):
        assert login(server, locked_client, wrong).status_code == 406
    assert login(server, locked_client, code(locked_secret)).status_code == 429
    seen = _overview(server)
    assert seen["2fa-admin-session"]["Session"]["OnlyThisBrowser"] is False
    assert seen["2fa-admin-session"]["LockedUntil"] is None
    assert seen["2fa-admin-locked"]["Session"] is None and seen["2fa-admin-locked"]["LockedUntil"]
    # The holder of a session made one wrong guess since: counted, not locked.
    assert login(server, holder_client, "000000" if code(holder_secret) != "000000" else "111111").status_code == 406
    assert _overview(server)["2fa-admin-session"]["WrongCodesInARow"] == 1
    assert "TwoFactorAuthenticationKey" not in str(seen) and holder_secret not in str(seen)

    ended = server.admin().delete(f"{server.url}/admin/certificates/2fa/sessions",
                                  params={"thumbprint": holder.thumbprint})
    assert ended.status_code == 200 and ended.json()["Ended"] is True
    assert whoami(server, holder_client).status_code == 428  # its next request asks for a code again
    lifted = server.admin().delete(f"{server.url}/admin/certificates/2fa/lockout",
                                   params={"thumbprint": locked.thumbprint})
    assert lifted.status_code == 200 and lifted.json()["Lifted"] is True
    assert login(server, locked_client, code(locked_secret, offset=30)).status_code == 202
    audit = (server.data_dir / "audit.log").read_text()
    assert '"twofactor.session-ended"' in audit and '"twofactor.lockout-lifted"' in audit


def test_two_factor_control_follows_the_edit_rules(server: RunningServer) -> None:
    admin_cert, _ = enrol(server, "2fa-control-admin", "ClusterAdmin")
    user_cert, _ = enrol(server, "2fa-control-user")
    operator = server.generate("2fa-control-operator", "Operator")
    as_operator = server.session(operator.pem_path)
    for path in ("sessions", "lockout"):
        refused = as_operator.delete(f"{server.url}/admin/certificates/2fa/{path}",
                                     params={"thumbprint": admin_cert.thumbprint})
        assert refused.status_code == 403, refused.text
        allowed = as_operator.delete(f"{server.url}/admin/certificates/2fa/{path}",
                                     params={"thumbprint": user_cert.thumbprint})
        assert allowed.status_code == 200, allowed.text
    plain = server.generate("2fa-control-plain")
    assert server.session(plain.pem_path).get(f"{server.url}/admin/certificates/2fa/sessions").status_code == 403
    assert server.admin().delete(f"{server.url}/admin/certificates/2fa/lockout",
                                 params={"thumbprint": plain.thumbprint}).status_code == 400
    assert server.admin().delete(f"{server.url}/admin/certificates/2fa/sessions",
                                 params={"thumbprint": "0" * 40}).status_code == 404
