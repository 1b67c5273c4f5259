"""The audit log: what is recorded, who may read it, and that the hash chain catches edits and removals."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from conftest import ROOT, RunningServer


def roost(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "roost", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=120)


def entries(server: RunningServer) -> list[dict]:
    return [json.loads(line) for line in (server.data_dir / "audit.log").read_text().splitlines()]


def test_certificate_and_database_events_say_who_and_what(fresh_server: RunningServer) -> None:
    admin = fresh_server.admin()
    assert admin.put(f"{fresh_server.url}/admin/databases", params={"name": "Orders"}).status_code == 201
    user = fresh_server.generate("reader", "ValidUser", {"Orders": "Read"}, Password="hunter2-secret")
    assert admin.delete(f"{fresh_server.url}/admin/certificates", params={"thumbprint": user.thumbprint}).status_code == 204
    assert admin.delete(f"{fresh_server.url}/admin/databases", json={"DatabaseNames": ["Orders"]}).status_code == 200
    log = entries(fresh_server)
    events = [e["Event"] for e in log]
    assert events == ["database.created", "certificate.generated", "certificate.deleted", "database.deleted"]
    generated = log[1]
    assert generated["Actor"].startswith("CN=admin.client")
    assert generated["Certificates"] == [{"Name": "reader", "Thumbprint": user.thumbprint, "Clearance": "ValidUser",
                                          "Permissions": {"Orders": "Read"}}]
    text = (fresh_server.data_dir / "audit.log").read_text()
    assert "hunter2-secret" not in text and "PRIVATE KEY" not in text
    package_key = user.pem_path.read_text().split("PRIVATE KEY-----")[1].strip().splitlines()[-1]
    assert package_key not in text


def test_authentication_refusals_are_rate_limited_per_certificate(fresh_server: RunningServer, tmp_path: Path) -> None:
    stranger = fresh_server.generate("soon-gone", "ValidUser")
    fresh_server.admin().delete(f"{fresh_server.url}/admin/certificates", params={"thumbprint": stranger.thumbprint})
    session = fresh_server.session(stranger.pem_path)
    for _ in range(5):
        assert session.get(f"{fresh_server.url}/databases").status_code == 403
    refused = [e for e in entries(fresh_server) if e["Event"] == "auth.refused"]
    assert len(refused) == 1
    assert refused[0]["Thumbprint"] == stranger.thumbprint and refused[0]["Status"] == "UnfamiliarCertificate"
    # Lack of clearance is not an authentication failure: not logged.
    user = fresh_server.generate("user", "ValidUser")
    assert fresh_server.session(user.pem_path).get(f"{fresh_server.url}/admin/audit").status_code == 403
    assert len([e for e in entries(fresh_server) if e["Event"] == "auth.refused"]) == 1


def test_reading_the_log_needs_operator(fresh_server: RunningServer) -> None:
    url = f"{fresh_server.url}/admin/audit"
    admin = fresh_server.admin()
    for name in ("a", "b", "c"):
        admin.put(f"{fresh_server.url}/admin/databases", params={"name": name})
    operator = fresh_server.generate("op", "Operator")
    user = fresh_server.generate("user", "ValidUser")
    assert fresh_server.session(user.pem_path).get(url).status_code == 403
    assert fresh_server.session(None).get(url).status_code == 403
    everything = fresh_server.session(operator.pem_path).get(url).json()
    assert [e["Event"] for e in everything["Entries"]][:3] == ["database.created"] * 3
    newest = admin.get(url, params={"limit": 2}).json()["Entries"]
    assert [e["Seq"] for e in newest] == [everything["LastSeq"] - 1, everything["LastSeq"]]
    after = admin.get(url, params={"since": 1, "limit": 1}).json()["Entries"]
    assert [e["Seq"] for e in after] == [2]
    assert admin.get(url, params={"since": "yesterday"}).status_code == 400
    assert admin.get(url, params={"limit": 0}).status_code == 400


def test_cli_tail_reads_through_the_api(fresh_server: RunningServer) -> None:
    fresh_server.admin().put(f"{fresh_server.url}/admin/databases", params={"name": "Tailed"})
    done = roost("audit", "tail", "--data-dir", str(fresh_server.data_dir), "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1])["Database"] == "Tailed"
    user = fresh_server.generate("user", "ValidUser")
    refused = roost("audit", "tail", "--data-dir", str(fresh_server.data_dir), "--cert", str(user.pem_path))
    assert refused.returncode == 1 and "403" in refused.stderr


def test_verify_detects_an_edited_a_removed_and_a_cut_off_entry(fresh_server: RunningServer) -> None:
    admin = fresh_server.admin()
    for name in ("one", "two", "three", "four"):
        admin.put(f"{fresh_server.url}/admin/databases", params={"name": name})
    fresh_server.stop()  # the storage head is written by the server; stop so that it is flushed
    data_dir = str(fresh_server.data_dir)
    path = fresh_server.data_dir / "audit.log"
    intact = path.read_text()
    ok = roost("audit", "verify", "--data-dir", data_dir)
    assert ok.returncode == 0 and "intact: 4 entries" in ok.stdout

    lines = intact.splitlines(keepends=True)
    path.write_text(intact.replace('"Database":"two"', '"Database":"TWO"'))
    edited = roost("audit", "verify", "--data-dir", data_dir)
    assert edited.returncode == 1 and "entry 2 was altered" in edited.stdout

    path.write_text("".join(lines[:2] + lines[3:]))
    removed = roost("audit", "verify", "--data-dir", data_dir)
    assert removed.returncode == 1 and "entry 3 is missing" in removed.stdout

    path.write_text("".join(lines[:3]))
    cut = roost("audit", "verify", "--data-dir", data_dir)
    assert cut.returncode == 1 and "Entries 4 to 4 are missing" in cut.stdout

    path.write_text(intact.replace('"Database":"four"', '"Database":"FOUR"'))
    last = roost("audit", "verify", "--data-dir", data_dir)
    assert last.returncode == 1 and "Entry 4 was altered" in last.stdout


def test_secret_fields_are_refused(tmp_path: Path) -> None:
    import pytest

    from roost.security.audit import AuditLog

    log = AuditLog(tmp_path / "audit.log")
    log.record("backup.created", Database="x", Recipients=["age1..."])
    for field in ("Password", "backup_passphrase", "PrivateKey", "TwoFactorKey", "Identity"):
        with pytest.raises(ValueError, match="secret"):
            log.record("x", **{field: "v"})
    assert len((tmp_path / "audit.log").read_text().splitlines()) == 1


def test_two_factor_successes_failures_and_lockouts_are_recorded(fresh_server: RunningServer) -> None:
    import pyotp

    secret = fresh_server.admin().get(f"{fresh_server.url}/admin/certificates/2fa/generate").json()["Secret"]
    cert = fresh_server.generate("second-factor", "ValidUser", TwoFactorAuthenticationKey=secret)
    client = fresh_server.session(cert.pem_path)
    url = f"{fresh_server.url}/authentication/2fa"
    now = pyotp.TOTP(secret)
    valid = {now.at(time.time() + offset) for offset in (-30, 0, 30)}
    wrong = next(c for c in ("000000", "111111", "222222") if c not in valid)
    assert client.post(url, params={"hasLimits": "false"}, json={"Token": now.now()}).status_code == 202
    for _ in range(5):
        assert client.post(url, params={"hasLimits": "false"}, json={"Token": wrong}).status_code == 406
    assert client.post(url, params={"hasLimits": "false"}, json={"Token": now.now()}).status_code == 429
    assert client.post(url, params={"hasLimits": "false"}, json={"Token": "abc"}).status_code == 400
    events = [e for e in entries(fresh_server) if e["Event"].startswith("twofactor.")]
    assert [e["Event"] for e in events] == ["twofactor.succeeded"] + ["twofactor.failed"] * 4 + [
        "twofactor.locked", "twofactor.failed", "twofactor.failed"]
    assert all(e["ActorThumbprint"] == cert.thumbprint for e in events)
    assert events[-3]["LockedUntil"]
    text = (fresh_server.data_dir / "audit.log").read_text()
    assert secret not in text, [line for line in text.splitlines() if secret in line]
    assert f"\"{wrong}\"" not in text
