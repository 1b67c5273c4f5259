"""``roost certs generate --require-2fa`` and ``roost auth 2fa`` against a real server process."""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pyotp
import zxingcpp
from click.testing import CliRunner, Result

from conftest import RunningServer
from roost.cli.main import main


def roost(server: RunningServer, *args: str) -> Result:
    group, command, *rest = args
    where = ["--url", server.url, "--data-dir", str(server.data_dir)]
    return CliRunner().invoke(main, [group, command, *where, *rest], catch_exceptions=False)


def code(secret: str, offset: float = 0.0) -> str:
    return pyotp.TOTP(secret).at(time.time() + offset)


def decode_terminal_qr(text: str) -> str:
    """Read segno's compact terminal QR code (half blocks, two module rows per line) with zxing-cpp."""
    glyphs = {"█": (1, 1), "▀": (1, 0), "▄": (0, 1), " ": (0, 0)}
    rows = [line for line in text.splitlines() if line.strip() and set(line) <= set(glyphs)]
    width = max(len(r) for r in rows)
    pixels: list[list[int]] = []
    for row in rows:
        cells = [glyphs[c] for c in row.ljust(width)]
        pixels += [[top for top, _ in cells], [bottom for _, bottom in cells]]
    # A drawn half block is a light module: segno draws for a dark terminal background.
    image = np.pad(np.array(pixels, dtype=np.uint8) * 255, 4, constant_values=255)
    results = zxingcpp.read_barcodes(np.kron(image, np.ones((8, 8), dtype=np.uint8)))
    assert len(results) == 1, results
    return str(results[0].text)


def enrolled(server: RunningServer, name: str, tmp_path: Path) -> tuple[Path, str, str]:
    generated = roost(server, "certs", "generate", name, "--require-2fa", "--pem", "--out", str(tmp_path))
    assert generated.exit_code == 0, generated.output
    key_line = generated.output.split("(shown once; Roost never shows it again):\n", 1)[1].splitlines()[0]
    secret = key_line.replace(" ", "")
    assert re.fullmatch(r"[A-Z2-7]{32}", secret), key_line
    return tmp_path / f"{name}.pem", secret, generated.output


def test_generate_with_require_2fa_prints_the_key_and_a_qr_code_of_the_exact_uri(server: RunningServer,
                                                                                  tmp_path: Path) -> None:
    pem, secret, output = enrolled(server, "cli-2fa-alice", tmp_path)
    uri = f"otpauth://totp/localhost:cli-2fa-alice?secret={secret}&issuer=localhost"
    assert f"  {uri}\n" in output
    assert decode_terminal_qr(output) == uri
    # The key is the certificate's: without a session the certificate is refused with the 2FA message.
    refused = server.session(pem).get(f"{server.url}/certificates/whoami")
    assert refused.status_code == 428
    # On the command line the refusal says the command that opens a session (not "POST the TOTP value").
    cli_refused = roost(server, "certs", "whoami", "--cert", str(pem))
    assert cli_refused.exit_code == 1 and f"roost auth 2fa --cert {pem} --code" in cli_refused.output
    plain = roost(server, "certs", "whoami")  # the twin: a certificate without 2FA is not told to open a session
    assert plain.exit_code == 0 and "roost auth 2fa" not in plain.output
    listed = server.admin().get(f"{server.url}/admin/certificates", params={"name": "cli-2fa-alice"})
    assert listed.json()["Results"][0]["HasTwoFactor"] is True and secret not in listed.text

    plain = roost(server, "certs", "generate", "cli-2fa-plain", "--pem", "--out", str(tmp_path))
    assert plain.exit_code == 0 and "Two-factor" not in plain.output
    assert server.session(tmp_path / "cli-2fa-plain.pem").get(f"{server.url}/certificates/whoami").status_code == 200

    offline = roost(server, "certs", "generate", "cli-2fa-offline", "--offline", "--require-2fa", "--out",
                    str(tmp_path))
    assert offline.exit_code == 2 and "--require-2fa needs the server" in offline.output


def test_auth_2fa_opens_a_cookie_session_or_one_for_all_clients(server: RunningServer, tmp_path: Path) -> None:
    pem, secret, _ = enrolled(server, "cli-2fa-bob", tmp_path)
    bad = roost(server, "auth", "2fa", "--cert", str(pem), "--code", "12ab56")
    assert bad.exit_code == 2 and "6-digit code" in bad.output
    wrong = roost(server, "auth", "2fa", "--cert", str(pem), "--code",
                  "000000" if code(secret) != "000000" else "111111")
    assert wrong.exit_code == 1 and "Wrong token provided for" in wrong.output

    limited = roost(server, "auth", "2fa", "--cert", str(pem), "--code", code(secret), "--duration", "5")
    assert limited.exit_code == 0, limited.output
    assert "open for 5 minutes, only for clients that send this header" in limited.output
    header = limited.output.strip().splitlines()[-1]
    assert header.startswith("Cookie: 2fa-cookie=")
    with_cookie = server.session(pem)
    with_cookie.headers["Cookie"] = header.split(": ", 1)[1]
    assert with_cookie.get(f"{server.url}/certificates/whoami").status_code == 200
    assert server.session(pem).get(f"{server.url}/certificates/whoami").status_code == 403  # no cookie
    assert roost(server, "certs", "whoami", "--cert", str(pem)).exit_code == 1

    next_code = code(secret, 30)
    everyone = roost(server, "auth", "2fa", "--cert", str(pem), "--code", next_code, "--all-clients")
    assert everyone.exit_code == 0, everyone.output
    assert "open for 120 minutes for every client" in everyone.output  # the server's default duration
    whoami = roost(server, "certs", "whoami", "--cert", str(pem))
    assert whoami.exit_code == 0, whoami.output

    ended = roost(server, "auth", "logout", "--cert", str(pem))
    assert ended.exit_code == 0 and "ended" in ended.output
    assert server.session(pem).get(f"{server.url}/certificates/whoami").status_code == 428
    replayed = roost(server, "auth", "2fa", "--cert", str(pem), "--code", next_code, "--all-clients")
    assert replayed.exit_code == 1 and "already used" in replayed.output


def test_edit_gives_a_new_key_or_removes_it_and_upload_can_require_2fa(server: RunningServer,
                                                                        tmp_path: Path) -> None:
    pem, secret, _ = enrolled(server, "cli-2fa-carol", tmp_path)
    first = server.session(pem).post(f"{server.url}/authentication/2fa?hasLimits=false", json={"Token": code(secret)})
    assert first.status_code == 202
    entry = server.admin().get(f"{server.url}/admin/certificates", params={"name": "cli-2fa-carol"}).json()
    tp = entry["Results"][0]["Thumbprint"]
    assert server.session(pem).get(f"{server.url}/certificates/whoami").status_code == 200

    plain_edit = roost(server, "certs", "edit", tp, "-p", "carol-db=Read")
    assert plain_edit.exit_code == 0 and "Two-factor" not in plain_edit.output
    assert server.session(pem).get(f"{server.url}/certificates/whoami").status_code == 200  # key and session kept

    rekeyed = roost(server, "certs", "edit", tp, "--require-2fa")
    assert rekeyed.exit_code == 0, rekeyed.output
    new_secret = rekeyed.output.split("(shown once; Roost never shows it again):\n", 1)[1].splitlines()[0]
    new_secret = new_secret.replace(" ", "")
    assert new_secret != secret
    assert decode_terminal_qr(rekeyed.output) == (
        f"otpauth://totp/localhost:cli-2fa-carol?secret={new_secret}&issuer=localhost")
    assert server.session(pem).get(f"{server.url}/certificates/whoami").status_code == 428  # old session ended
    opened = roost(server, "auth", "2fa", "--cert", str(pem), "--code", code(new_secret, 30), "--all-clients")
    assert opened.exit_code == 0, opened.output

    removed = roost(server, "certs", "edit", tp, "--remove-2fa")
    assert removed.exit_code == 0 and "no longer needs a code" in removed.output
    assert roost(server, "auth", "logout", "--cert", str(pem)).exit_code == 0
    me = server.session(pem).get(f"{server.url}/certificates/whoami")
    assert me.status_code == 200 and me.json()["HasTwoFactor"] is False

    # Upload: the same certificate registered again after a delete, now with a key.
    crt = tmp_path / "carol.crt"
    crt.write_bytes(pem.read_bytes().split(b"-----END CERTIFICATE-----")[0] + b"-----END CERTIFICATE-----\n")
    assert roost(server, "certs", "delete", tp, "--yes").exit_code == 0
    uploaded = roost(server, "certs", "upload", str(crt), "--name", "cli-2fa-carol-again", "--require-2fa")
    assert uploaded.exit_code == 0, uploaded.output
    upload_secret = uploaded.output.split("(shown once; Roost never shows it again):\n", 1)[1].splitlines()[0]
    assert server.session(pem).get(f"{server.url}/certificates/whoami").status_code == 428
    accepted = server.session(pem).post(f"{server.url}/authentication/2fa?hasLimits=false",
                                        json={"Token": code(upload_secret.replace(" ", ""))})
    assert accepted.status_code == 202
