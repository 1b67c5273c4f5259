"""The CLI's one HTTP client: where the server is found, and the same exit codes and one-line errors everywhere."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from conftest import RunningServer
from roost.cli.main import main

# One command of each family that talks to a server: certificates, 2FA, allowlist, audit, backups.
COMMANDS = [
    ["certs", "whoami"],
    ["certs", "list"],
    ["security", "allowed-ips"],
    ["audit", "tail"],
    ["backup", "schedule", "list"],
]


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner(env={"ROOST_URL": None, **(env or {})}).invoke(main, list(args), catch_exceptions=False)


def copy_data_dir(server: RunningServer, tmp_path: Path, url: str) -> Path:
    """A data directory with the server's admin certificate and CA, whose server.url says ``url``."""
    data_dir = tmp_path / "data"
    (data_dir / "certificates").mkdir(parents=True)
    for name in ("admin.client.pem", "ca.crt"):
        (data_dir / "certificates" / name).write_bytes((server.certs_dir / name).read_bytes())
    (data_dir / "server.url").write_text(url + "\n")
    return data_dir


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_server_url_in_the_data_dir_is_found(server: RunningServer, command: list[str]) -> None:
    """After `roost serve --port N`, every command finds the server from the data directory alone."""
    assert (server.data_dir / "server.url").read_text().strip() == server.url
    found = run(*command, "--data-dir", str(server.data_dir))
    assert found.exit_code == 0, found.output


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_no_server_is_exit_code_3_with_one_line(server: RunningServer, tmp_path: Path, command: list[str]) -> None:
    """The refusing twin: a server.url where nobody answers is named in the error, exit code 3, one line."""
    data_dir = copy_data_dir(server, tmp_path, "https://127.0.0.1:9")
    nobody = run(*command, "--data-dir", str(data_dir))
    assert nobody.exit_code == 3
    assert nobody.output == "Error: No server answers at https://127.0.0.1:9: is Roost running there?\n"


def test_url_then_environment_then_server_url(server: RunningServer, tmp_path: Path) -> None:
    data_dir = copy_data_dir(server, tmp_path, "https://127.0.0.1:9")
    # ROOST_URL wins over server.url...
    via_env = run("certs", "whoami", "--data-dir", str(data_dir), env={"ROOST_URL": server.url})
    assert via_env.exit_code == 0, via_env.output
    # ...and --url over ROOST_URL.
    via_flag = run("certs", "whoami", "--data-dir", str(data_dir), "--url", server.url,
                   env={"ROOST_URL": "https://127.0.0.1:9"})
    assert via_flag.exit_code == 0, via_flag.output
    wrong_flag = run("certs", "whoami", "--data-dir", str(data_dir), "--url", "https://127.0.0.1:9",
                     env={"ROOST_URL": server.url})
    assert wrong_flag.exit_code == 3 and "https://127.0.0.1:9" in wrong_flag.output


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_takes_insecure(server: RunningServer, tmp_path: Path, command: list[str]) -> None:
    """--insecure is on every command that talks to a server; without it an unknown server CA is exit code 3."""
    data_dir = copy_data_dir(server, tmp_path, server.url)
    (data_dir / "certificates" / "ca.crt").unlink()  # the client no longer knows the server's CA
    unverified = run(*command, "--data-dir", str(data_dir))
    assert unverified.exit_code == 3 and "Cannot verify the server certificate" in unverified.output
    insecure = run(*command, "--data-dir", str(data_dir), "--insecure")
    assert insecure.exit_code == 0, insecure.output


def test_a_refusal_is_exit_code_1_with_the_servers_message(server: RunningServer, tmp_path: Path) -> None:
    reader = server.generate("cli-client-reader", "ValidUser", {"somedb": "Read"})
    refused = run("security", "allowed-ips", "--url", server.url, "--cert", str(reader.pem_path),
                  "--ca", str(server.ca_pem))
    assert refused.exit_code == 1
    assert refused.output.startswith("Error: ") and "(HTTP 403)" in refused.output and refused.output.count("\n") == 1
