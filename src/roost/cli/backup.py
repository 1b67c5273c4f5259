"""``roost backup ...``: encrypted backups from the command line (create, restore, verify, keygen, schedule)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from roost.cli.client import CHUNK, EXIT_REFUSED, EXIT_USAGE, CliError, Endpoint, server_options


@click.group()
def backup() -> None:
    """Encrypted backups (age format): create, restore, verify, schedules. See docs/backups.md."""


def _passphrase(passphrase_file: Path | None, ask: bool, confirm: bool) -> str | None:
    if passphrase_file is not None:
        return passphrase_file.read_text().rstrip("\n")
    env = os.environ.get("ROOST_BACKUP_PASSPHRASE")
    if env:
        return env
    if ask:
        value: str = click.prompt("Backup passphrase", hide_input=True, confirmation_prompt=confirm, err=True)
        return value
    return None


def _recipients(values: tuple[str, ...], files: tuple[Path, ...]) -> list[str]:
    recipients = list(values)
    for path in files:
        recipients += [line.strip() for line in path.read_text().splitlines()
                       if line.strip() and not line.startswith("#")]
    return recipients


@backup.command("keygen")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), required=True,
              help="Where to write the secret key (mode 0600). Keep it OFF the server.")
def keygen(out: Path) -> None:
    """Make an age X25519 key pair: the secret key goes to --out, the public key (age1...) is printed."""
    from roost.backups.crypto import new_identity

    secret, public = new_identity()
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(f"# public key: {public}\n{secret}\n")
    click.echo(public)


@backup.command("create")
@click.option("--db", "database", default=None, help="The database to back up (needs its Admin access).")
@click.option("--all", "everything", is_flag=True, help="Every database plus the certificate registry (Operator).")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), required=True, help="The backup file.")
@click.option("--recipient", "-r", multiple=True, help="age public key (age1...); repeatable.")
@click.option("--recipients-file", "-R", type=click.Path(path_type=Path, exists=True, dir_okay=False), multiple=True)
@click.option("--passphrase", "ask", is_flag=True, help="Lock with a passphrase instead (prompted).")
@click.option("--passphrase-file", type=click.Path(path_type=Path, exists=True, dir_okay=False), default=None)
@server_options
def create(endpoint: Endpoint, database: str | None, everything: bool, out: Path, recipient: tuple[str, ...],
           recipients_file: tuple[Path, ...], ask: bool, passphrase_file: Path | None) -> None:
    """Download an encrypted backup of one database (--db) or of everything (--all)."""
    if bool(database) == everything:
        raise CliError("Give --db NAME or --all.", EXIT_USAGE)
    recipients = _recipients(recipient, recipients_file)
    passphrase = _passphrase(passphrase_file, ask, confirm=True) if (ask or passphrase_file) else None
    if not recipients and passphrase is None:
        raise CliError("A backup is always encrypted: give --recipient age1... (see roost backup keygen) or "
                       "--passphrase.", EXIT_USAGE)
    body: dict[str, Any] = {"Passphrase": passphrase} if passphrase is not None else {"Recipients": recipients}
    path = f"/databases/{database}/admin/backups" if database else "/admin/backups"
    response = endpoint.open("POST", path, body=body, timeout=None)
    partial = out.with_name(f".{out.name}.partial")
    written = 0
    try:
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f, click.progressbar(length=0, label="Downloading", file=sys.stderr,
                                                          show_pos=True, show_eta=False) as bar:
            while chunk := response.read(CHUNK):
                f.write(chunk)
                written += len(chunk)
                bar.update(len(chunk))
        if not response.isclosed() and response.length not in (None, 0):
            raise OSError("the download ended early")
        os.replace(partial, out)
    except Exception as exc:  # the server broke off (it logged why): keep no partial file under the name
        partial.unlink(missing_ok=True)
        raise CliError(f"The backup did not complete ({exc}); nothing was written to {out}.", EXIT_REFUSED) from exc
    finally:
        response.close()
    how = "with a passphrase" if passphrase else f"to {len(recipients)} recipient(s)"
    click.echo(f"Wrote {out} ({written} bytes, encrypted {how}).")


def _key_headers(identity: Path | None, ask: bool, passphrase_file: Path | None) -> dict[str, str]:
    if identity is not None:
        # One header line: the key file's lines joined (comments dropped).
        keys = [line.strip() for line in identity.read_text().splitlines() if line.strip() and not line.startswith("#")]
        return {"Roost-Backup-Identity": "\n".join(keys).replace("\n", " ")}
    passphrase = _passphrase(passphrase_file, True, confirm=False)
    assert passphrase is not None
    return {"Roost-Backup-Passphrase": passphrase}


@backup.command("restore")
@click.argument("file", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("--db", "database", required=True, help="Restore into this new or empty database.")
@click.option("--from-db", default=None, help="Which database of a multi-database (--all) backup to restore.")
@click.option("--identity", "-i", type=click.Path(path_type=Path, exists=True, dir_okay=False), default=None,
              help="age secret key file (from roost backup keygen).")
@click.option("--passphrase-file", type=click.Path(path_type=Path, exists=True, dir_okay=False), default=None)
@server_options
def restore(endpoint: Endpoint, file: Path, database: str, from_db: str | None, identity: Path | None,
            passphrase_file: Path | None) -> None:
    """Upload FILE and restore it (Operator). The server applies it only after the whole file authenticated."""
    headers = _key_headers(identity, True, passphrase_file)
    size = file.stat().st_size

    def body() -> Any:
        with file.open("rb") as f, click.progressbar(length=size, label="Uploading", file=sys.stderr) as bar:
            while chunk := f.read(CHUNK):
                bar.update(len(chunk))
                yield chunk

    result = endpoint.json("POST", "/admin/backups/restore", params={"database": database, "from": from_db},
                           content=body(), headers={**headers, "Content-Type": "application/octet-stream"},
                           timeout=None)
    click.echo(f"Restored {result['Documents']} documents from '{result['From']}' into '{result['Database']}'.")


@backup.command("verify")
@click.argument("file", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("--identity", "-i", type=click.Path(path_type=Path, exists=True, dir_okay=False), default=None)
@click.option("--passphrase-file", type=click.Path(path_type=Path, exists=True, dir_okay=False), default=None)
def verify(file: Path, identity: Path | None, passphrase_file: Path | None) -> None:
    """Decrypt and check FILE locally without restoring anything (no server needed). Exit 1 if it is bad."""
    from roost.backups import crypto
    from roost.backups.service import verify_file
    from roost.errors import RoostError

    try:
        identities = crypto.parse_identities(identity.read_text()) if identity else None
        passphrase = None if identity else _passphrase(passphrase_file, True, confirm=False)
        summary = verify_file(file, identities=identities, passphrase=passphrase, staging=file.resolve().parent)
    except RoostError as error:
        raise CliError(error.message, EXIT_REFUSED) from error
    click.echo(f"OK: {file} authenticates and is complete. Created {summary.created}; "
               f"{len(summary.databases)} database(s), {summary.documents} documents"
               + (f", {summary.certificates} certificates" if summary.scope == "all" else "") + ".")
    for section in summary.databases:
        click.echo(f"  {section.name}: {section.documents} documents")


@backup.group("schedule")
def schedule() -> None:
    """Automated backups run by the server (Operator)."""


@schedule.command("set")
@click.option("--db", "database", required=True)
@click.option("--every", "interval", required=True, help="Interval: 90s, 30m, 6h, 1d.")
@click.option("--keep", "retention", type=click.IntRange(1, 10000), required=True, help="How many backups to keep.")
@click.option("--folder", required=True, help="Folder on the server (absolute, or relative to its data dir).")
@click.option("--recipient", "-r", multiple=True, required=True, help="age public key (age1...); repeatable.")
@server_options
def schedule_set(endpoint: Endpoint, database: str, interval: str, retention: int, folder: str,
                 recipient: tuple[str, ...]) -> None:
    """Create or change the schedule of one database."""
    seconds = _seconds(interval)
    result = endpoint.json("PUT", "/admin/backups/schedules", body={
        "Database": database, "IntervalSeconds": seconds, "Retention": retention, "Folder": folder,
        "Recipients": list(recipient)})
    _print_schedules(result["Schedules"])


@schedule.command("list")
@click.option("--json", "as_json", is_flag=True)
@server_options
def schedule_list(endpoint: Endpoint, as_json: bool) -> None:
    """Every schedule with the status of its last run (size, duration, errors)."""
    result = endpoint.json("GET", "/admin/backups/schedules")
    if as_json:
        click.echo(json.dumps(result["Schedules"], indent=2))
    else:
        _print_schedules(result["Schedules"])


@schedule.command("delete")
@click.option("--db", "database", required=True)
@server_options
def schedule_delete(endpoint: Endpoint, database: str) -> None:
    """Stop automated backups of a database (existing backup files are kept)."""
    result = endpoint.json("DELETE", "/admin/backups/schedules", params={"database": database})
    _print_schedules(result["Schedules"])


@schedule.command("run")
@click.option("--db", "database", required=True)
@server_options
def schedule_run(endpoint: Endpoint, database: str) -> None:
    """Run a schedule now and wait for it (to check a new schedule works)."""
    status = endpoint.json("POST", "/admin/backups/schedules/run", params={"database": database}, timeout=None)
    if status.get("LastError"):
        raise CliError(f"The backup failed: {status['LastError']}", EXIT_REFUSED)
    click.echo(f"Wrote {status['LastFile']} ({status['LastBytes']} bytes in {status['LastSeconds']} s).")


def _seconds(text: str) -> int:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    text = text.strip().lower()
    try:
        if text[-1] in units:
            return int(float(text[:-1]) * units[text[-1]])
        return int(text)
    except (ValueError, IndexError) as exc:
        raise CliError(f"'{text}' is not an interval such as 90s, 30m, 6h or 1d.", EXIT_USAGE) from exc


def _interval(seconds: int) -> str:
    """The way --every takes it: 6h, not 21600 s."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _print_schedules(schedules: list[dict[str, Any]]) -> None:
    if not schedules:
        click.echo("No backup schedules.")
    for s in schedules:
        status = s.get("Status") or {}
        last = (f"last error: {status['LastError']}" if status.get("LastError")
                else f"last good: {status.get('LastSuccess', 'never')}")
        click.echo(f"{s['Database']}: every {_interval(s['IntervalSeconds'])}, keep {s['Retention']}, to {s['Folder']} "
                   f"({len(s['Recipients'])} recipient(s)); {last}")
