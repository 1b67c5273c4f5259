"""``roost certs`` and ``roost server-cert`` against a real server process: output, one-line errors, exit codes."""

from __future__ import annotations

import datetime as dt
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from cryptography.hazmat.primitives import serialization

from certtools import issue, outside_ca, roost_ca
from conftest import RunningServer
from roost.cli.certs import relative_expiry
from roost.cli.main import main
from roost.pki import packages
from roost.pki.authority import default_server_hosts


def roost(server: RunningServer | None, *args: str, input: str | None = None) -> Result:
    """Run the CLI in-process; it talks HTTPS to the server process like any client."""
    where = ["--url", server.url, "--data-dir", str(server.data_dir)] if server else []
    group, command, *rest = args
    return CliRunner().invoke(main, [group, command, *where, *rest], input=input, catch_exceptions=False)


def test_relative_expiry() -> None:
    now = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    assert relative_expiry("2030-01-13T00:00:00.0000000Z", now) == "in 12 days"
    assert relative_expiry("2029-12-31T23:59:59.0000000Z", now) == "expired"
    assert relative_expiry("2030-01-01T05:00:00.0000000Z", now) == "in 5 hours"
    assert relative_expiry("2030-07-01T00:00:00.0000000Z", now) == "in 6 months"
    assert relative_expiry("2034-12-31T00:00:00.0000000Z", now) == "in 5 years"


def test_generate_list_show_edit_disable_delete(server: RunningServer, tmp_path: Path) -> None:
    generated = roost(server, "certs", "generate", "cli-alice", "-p", "clidb=Read", "--months", "3", "--pem",
                      "--out", str(tmp_path))
    assert generated.exit_code == 0, generated.output
    zip_path, pem = tmp_path / "cli-alice.zip", tmp_path / "cli-alice.pem"
    assert (zip_path.stat().st_mode & 0o777) == 0o600 and (pem.stat().st_mode & 0o777) == 0o600
    assert {"cli-alice.pfx", "cli-alice.crt", "cli-alice.key", "README.txt"} <= set(zipfile.ZipFile(zip_path).namelist())
    thumbprint = generated.output.split("(certificate ")[1].split(")")[0]

    listed = roost(server, "certs", "list", "--filter", "cli-alice")
    assert listed.exit_code == 0
    header, row = listed.output.splitlines()[:2]
    assert header.split() == ["NAME", "CLEARANCE", "THUMBPRINT", "EXPIRES", "LAST", "USED", "ACCESS"]
    assert row.split()[:3] == ["cli-alice", "User", thumbprint] and "in 3 months" in row and "clidb:Read" in row

    mine = roost(server, "certs", "whoami", "--cert", str(pem))
    assert mine.exit_code == 0 and f"Thumbprint    {thumbprint}" in mine.output

    edited = roost(server, "certs", "edit", thumbprint, "-p", "otherdb=Admin", "--disable")
    assert edited.exit_code == 0, edited.output
    assert edited.output.strip() == (f"Updated 'cli-alice' ({thumbprint}): User, clidb:Read, otherdb:Admin "
                                     "(disabled)")
    refused = roost(server, "certs", "whoami", "--cert", str(pem))
    assert refused.exit_code == 1
    assert refused.output.strip() == (
        f"Error: The supplied client certificate 'CN=cli-alice (Thumbprint: {thumbprint})' is disabled on this server. "
        "Ask an administrator to enable it again (Certificates > Edit) or to issue you a new one. (HTTP 403)")
    assert roost(server, "certs", "edit", thumbprint, "--enable").exit_code == 0
    assert roost(server, "certs", "whoami", "--cert", str(pem)).exit_code == 0

    shown = roost(server, "certs", "show", thumbprint)
    assert "Access        clidb:Read, otherdb:Admin" in shown.output and "Disabled      no" in shown.output
    missing = roost(server, "certs", "show", "AB" * 20)
    assert missing.exit_code == 1 and "There is no certificate with thumbprint" in missing.output

    deleted = roost(server, "certs", "delete", thumbprint, "--yes")
    assert deleted.exit_code == 0 and deleted.output.strip() == f"Deleted {thumbprint}."
    gone = roost(server, "certs", "whoami", "--cert", str(pem))
    assert gone.exit_code == 1 and "is unknown to the server" in gone.output


def test_refusals_are_one_line_with_exit_code_1(server: RunningServer, tmp_path: Path) -> None:
    operator = server.generate("cli-operator", "Operator")
    refused = roost(server, "certs", "generate", "cli-root", "--clearance", "ClusterAdmin", "--cert",
                    str(operator.pem_path), "--out", str(tmp_path))
    assert refused.exit_code == 1
    assert refused.output == ("Error: Cannot generate the client certificate 'cli-root' with 'Cluster Admin' security "
                              "clearance because the current client certificate being used has a lower clearance: "
                              "Operator (HTTP 403)\n")
    assert not (tmp_path / "cli-root.zip").exists()
    bad_permission = roost(server, "certs", "generate", "x", "-p", "db=Write")
    assert bad_permission.exit_code == 2 and "write DATABASE=Read, DATABASE=ReadWrite or DATABASE=Admin" in \
        bad_permission.output


def test_a_certificate_the_server_does_not_know_is_explained(server: RunningServer, tmp_path: Path) -> None:
    stranger = issue(outside_ca("CLI Stranger CA"), "stranger").write_pem(tmp_path / "stranger.pem")
    result = roost(server, "certs", "whoami", "--cert", str(stranger))
    assert result.exit_code == 3
    message = result.output.strip()
    assert message.startswith(f"Error: The server at {server.url} closed the connection during the TLS handshake: "
                              f"it did not accept the client certificate {stranger} (CN=stranger, issued by "
                              "O=Roost,CN=CLI Stranger CA).")
    assert "comes from an issuer this server does not know" in message and "roost certs upload" in message
    # Its twin: the same kind of certificate from the server's own CA is answered over HTTP (403, exit 1).
    known_issuer = issue(roost_ca(server.certs_dir), "unregistered").write_pem(tmp_path / "unregistered.pem")
    answered = roost(server, "certs", "whoami", "--cert", str(known_issuer))
    assert answered.exit_code == 1 and "is unknown to the server" in answered.output


def test_no_server_and_untrusted_server_are_exit_code_3(server: RunningServer, tmp_path: Path) -> None:
    nobody = CliRunner().invoke(main, ["certs", "list", "--url", "https://127.0.0.1:9", "--data-dir",
                                       str(server.data_dir)])
    assert nobody.exit_code == 3 and nobody.output == "Error: No server answers at https://127.0.0.1:9: is Roost " \
                                                      "running there?\n"
    other_ca = tmp_path / "other-ca.crt"
    other_ca.write_bytes(outside_ca().certificate_pem())
    untrusted = roost(server, "certs", "list", "--ca", str(other_ca))
    assert untrusted.exit_code == 3 and "Cannot verify the server certificate" in untrusted.output


def test_offline_self_signed_package_is_uploaded_then_works(server: RunningServer, tmp_path: Path) -> None:
    made = CliRunner().invoke(main, ["certs", "generate", "offline-app", "--offline", "--pem", "--out", str(tmp_path)])
    assert made.exit_code == 0, made.output
    assert "Made offline (self-signed)" in made.output
    pem = tmp_path / "offline-app.pem"
    before = roost(server, "certs", "whoami", "--cert", str(pem))
    assert before.exit_code == 3  # nobody told the server about it yet
    uploaded = roost(server, "certs", "upload", str(tmp_path / "offline-app.zip"), "--name", "offline-app",
                     "--clearance", "Operator")
    assert uploaded.exit_code == 0, uploaded.output
    after = roost(server, "certs", "whoami", "--cert", str(pem))
    assert after.exit_code == 0 and "Clearance     Operator" in after.output


def test_offline_with_own_ca_and_a_protected_pfx(server: RunningServer, tmp_path: Path) -> None:
    ca = outside_ca("Team CA")
    ca_cert, ca_key = tmp_path / "team-ca.crt", tmp_path / "team-ca.key"
    ca_cert.write_bytes(ca.certificate_pem())
    ca_key.write_bytes(ca.private_key_pem())
    secret = tmp_path / "pass.txt"
    secret.write_text("team-secret\n")
    made = CliRunner().invoke(main, ["certs", "generate", "team-app", "--offline", "--ca-cert", str(ca_cert),
                                     "--ca-key", str(ca_key), "--password-file", str(secret), "--out", str(tmp_path)])
    assert made.exit_code == 0, made.output
    with zipfile.ZipFile(tmp_path / "team-app.zip") as archive:
        pfx = archive.extract("team-app.pfx", tmp_path)
        key_pem = archive.read("team-app.key")
    wrong = roost(server, "certs", "upload", pfx, "--name", "team-app")
    assert wrong.exit_code == 1 and "the .pfx is protected; supply its Password" in wrong.output
    uploaded = roost(server, "certs", "upload", pfx, "--name", "team-app", "--password-file", str(secret))
    assert uploaded.exit_code == 0, uploaded.output
    crt = (tmp_path / "team-app.crt")
    with zipfile.ZipFile(tmp_path / "team-app.zip") as archive:
        crt.write_bytes(archive.read("team-app.crt"))
    key = serialization.load_pem_private_key(key_pem, b"team-secret")
    pem = tmp_path / "team-app.pem"
    pem.write_bytes(crt.read_bytes() + key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
    assert roost(server, "certs", "whoami", "--cert", str(pem)).exit_code == 0
    mismatched = CliRunner().invoke(main, ["certs", "generate", "bad", "--offline", "--ca-cert", str(ca_cert),
                                           "--ca-key", str(tmp_path / "team-ca.key"), "--out", str(tmp_path / "x")])
    assert mismatched.exit_code == 0  # the right pair works...
    other_key = tmp_path / "other.key"
    other_key.write_bytes(outside_ca().private_key_pem())
    refused = CliRunner().invoke(main, ["certs", "generate", "bad2", "--offline", "--ca-cert", str(ca_cert),
                                        "--ca-key", str(other_key), "--out", str(tmp_path)])
    assert refused.exit_code == 2  # ...a key of another CA does not
    assert refused.output == "Error: The --ca-key does not belong to the --ca-cert certificate.\n"
    assert not (tmp_path / "bad2.zip").exists()


def test_export_purge_and_server_certificate_commands(fresh_server: RunningServer, tmp_path: Path) -> None:
    server = fresh_server
    exported = roost(server, "certs", "export", "--out", str(tmp_path / "cluster.pfx"))
    assert exported.exit_code == 0 and "(1 certificate)" in exported.output
    assert roost(server, "certs", "purge").output == "No expired certificates to purge.\n"

    renewed = roost(server, "server-cert", "renew")
    assert renewed.exit_code == 0 and renewed.output.startswith("Server certificate renewed: ")

    authority = roost_ca(server.certs_dir)
    key = issue(authority, "unused").key
    cert = authority.issue_server(key, default_server_hosts())
    pfx_path = tmp_path / "new-server.pfx"
    pfx_path.write_bytes(packages.pfx_bytes("server", cert, key, "pfx-pass", [authority.certificate]))
    secret = tmp_path / "pfx-pass.txt"
    secret.write_text("pfx-pass")
    replaced = roost(server, "server-cert", "replace", str(pfx_path), "--password-file", str(secret))
    assert replaced.exit_code == 0, replaced.output
    assert "Both stay trusted as Cluster Node" in replaced.output
    not_ours = roost(server, "server-cert", "renew")
    assert not_ours.exit_code == 1 and "was not generated by Roost, so Roost cannot renew it" in not_ours.output
    garbage = tmp_path / "garbage.pfx"
    garbage.write_bytes(b"garbage")
    bad = roost(server, "server-cert", "replace", str(garbage))
    assert bad.exit_code == 1 and bad.output.startswith("Error: Unable to load the provided certificate")


@pytest.mark.parametrize("args", [["certs", "--help"], ["server-cert", "--help"]])
def test_help_lists_every_command(args: list[str]) -> None:
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0
    expected = {"certs": ["generate", "upload", "list", "show", "edit", "delete", "purge", "export", "whoami"],
                "server-cert": ["replace", "renew"]}[args[0]]
    for command in expected:
        assert f"  {command} " in result.output


def test_docs_cover_every_command_and_route() -> None:
    from conftest import ROOT
    from roost.cli.certs import certs, server_cert
    from roost.http.routes.certificates import routes

    docs = (ROOT / "docs" / "certificates.md").read_text()
    for group, name in [(certs, "certs"), (server_cert, "server-cert")]:
        for command in group.commands:
            assert f"roost {name} {command}" in docs, f"docs/certificates.md does not show roost {name} {command}"
    for route in routes.routes:
        if "2fa" not in route.path:  # two-factor routes are documented in docs/two-factor.md
            assert route.path in docs, f"docs/certificates.md does not show {route.method} {route.path}"
