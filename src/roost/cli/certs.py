"""``roost certs ...`` and ``roost server-cert ...``: certificate management against a running server.

Every command is one or two calls of the HTTP API (docs/certificates.md shows the curl equivalent of each).
``roost certs generate --offline`` is the exception: it makes a package on this machine, with no server.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import io
import json
import os
import subprocess
import time
import zipfile
from pathlib import Path
from typing import Any

import click

from roost import clock
from roost.cli.client import CliError, Endpoint, server_options
from roost.pki.csr import new_request
from roost.pki.inspect import load_certificates
from roost.types import clearance_label

_CLEARANCES = {"user": "ValidUser", "validuser": "ValidUser", "operator": "Operator",
               "clusteradmin": "ClusterAdmin", "clusternode": "ClusterNode"}
_ACCESS = {"read": "Read", "readwrite": "ReadWrite", "admin": "Admin"}


def _clearance(value: str) -> str:
    found = _CLEARANCES.get(value.replace(" ", "").replace("-", "").casefold())
    if found is None:
        raise click.BadParameter(f"'{value}': use User, Operator or ClusterAdmin.")
    return found


def _permissions(values: tuple[str, ...]) -> dict[str, str]:
    permissions: dict[str, str] = {}
    for value in values:
        db, sep, access = value.partition("=")
        found = _ACCESS.get(access.strip().casefold())
        if not sep or not db.strip() or found is None:
            raise click.BadParameter(f"'{value}': write DATABASE=Read, DATABASE=ReadWrite or DATABASE=Admin.",
                                     param_hint="--permission")
        permissions[db.strip()] = found
    return permissions


def _password(prompt: bool, password_file: Path | None, what: str = "passphrase") -> str | None:
    """Passphrases come from a prompt or a file, never from the command line (which `ps` shows to everyone)."""
    if password_file is not None:
        try:
            return password_file.read_text().rstrip("\r\n") or None
        except OSError as exc:
            raise CliError(f"Cannot read {password_file}: {exc.strerror}.") from exc
    if prompt:
        return str(click.prompt(f"The {what}", hide_input=True, confirmation_prompt=what != "existing passphrase"))
    return os.environ.get("ROOST_CERT_PASSWORD") or None


def relative_expiry(not_after: str | None, now: dt.datetime | None = None) -> str:
    """"in 12 days", "in 5 months", "expired": how the list shows expiry."""
    if not not_after:
        return "-"
    end = clock.parse_wire_date(not_after)
    delta = end - (now or clock.now())
    if delta.total_seconds() < 0:
        return "expired"
    days = delta.days
    if days >= 730:
        return f"in {round(days / 365.25)} years"
    if days >= 90:
        return f"in {round(days / 30.44)} months"
    if days >= 2:
        return f"in {days} days"
    hours = int(delta.total_seconds() // 3600)
    return f"in {hours} hours" if hours != 1 else "in 1 hour"


def _relative_past(when: str | None) -> str:
    if not when:
        return "never"
    delta = clock.now() - clock.parse_wire_date(when)
    seconds = int(max(delta.total_seconds(), 0))
    if seconds < 120:
        return "just now"
    if seconds < 7200:
        return f"{seconds // 60} minutes ago"
    if seconds < 172800:
        return f"{seconds // 3600} hours ago"
    return f"{seconds // 86400} days ago"


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip()]
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    return "\n".join(lines)


def _permissions_text(entry: dict[str, Any]) -> str:
    permissions = entry.get("Permissions") or {}
    if entry.get("SecurityClearance") != "ValidUser":
        return "all databases"
    return ", ".join(f"{db}:{access}" for db, access in sorted(permissions.items())) or "none"


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    path.chmod(0o600)


def _save_package(zip_bytes: bytes, name: str, out: Path | None, pem: bool, has_password: bool) -> str:
    """Write ``<name>.zip`` (0600) and, with --pem, ``<name>.pem`` (certificate + key, for curl and the CLI)."""
    target = out or Path(f"{name}.zip")
    if target.is_dir():
        target = target / f"{name}.zip"
    if target.exists():
        raise CliError(f"{target} already exists; choose another --out or move it away.")
    _write_private(target, zip_bytes)
    with zipfile.ZipFile(io.BytesIO(zip_bytes)) as archive:
        crt, key = archive.read(f"{name}.crt"), archive.read(f"{name}.key")
    thumbprint = load_certificates(crt)[0].thumbprint
    lines = [f"Wrote {target} (certificate {thumbprint}). Keep it private: it holds the private key."]
    if pem:
        if has_password:
            lines.append("No .pem written: the key is passphrase-protected (see README.txt in the zip).")
        else:
            pem_path = target.with_suffix(".pem")
            _write_private(pem_path, crt + key)
            lines.append(f"Wrote {pem_path} (certificate + key) for curl --cert and roost --cert.")
    return "\n".join(lines)


# roost certs -------------------------------------------------------------------------------------------------


@click.group()
def certs() -> None:
    """Manage client certificates on a running server (and make packages offline)."""


@certs.command()
@click.argument("name")
@click.option("--clearance", default="User", show_default=True, help="User, Operator or ClusterAdmin.")
@click.option("--permission", "-p", multiple=True, metavar="DB=ACCESS",
              help="Database access of a User certificate (Read, ReadWrite, Admin); repeat for more.")
@click.option("--key-type", type=click.Choice(["EC-P256", "RSA-2048", "RSA-4096"]), default="EC-P256",
              show_default=True)
@click.option("--months", type=click.IntRange(1, 1200), default=None, help="Lifetime in months (default 5 years).")
@click.option("--password-prompt", is_flag=True, help="Protect the .pfx and .key with a passphrase (asked for).")
@click.option("--password-file", type=click.Path(path_type=Path), default=None,
              help="Read that passphrase from a file instead.")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Where to write <NAME>.zip.")
@click.option("--pem", is_flag=True, help="Also write <NAME>.pem (certificate + unencrypted key).")
@click.option("--offline", is_flag=True, help="Make the package here, without a server (self-signed unless --ca-cert).")
@click.option("--ca-cert", type=click.Path(path_type=Path, exists=True, dir_okay=False), default=None,
              help="With --offline: your own CA's certificate (PEM) to issue the certificate.")
@click.option("--ca-key", type=click.Path(path_type=Path, exists=True, dir_okay=False), default=None,
              help="With --offline: that CA's private key (PEM).")
@click.option("--url", default=None,
              help="The server (default $ROOST_URL, then <data-dir>/server.url, then https://localhost:8443).")
@click.option("--cert", "cert", envvar="ROOST_CERT", type=click.Path(path_type=Path), default=None,
              help="Your client certificate PEM (default <data-dir>/certificates/admin.client.pem).")
@click.option("--ca", "ca", envvar="ROOST_CA", type=click.Path(path_type=Path), default=None,
              help="The server's CA certificate (default <data-dir>/certificates/ca.crt).")
@click.option("--data-dir", envvar="ROOST_DATA_DIR", type=click.Path(path_type=Path), default=None,
              help="A local server's data directory, where the defaults come from (default ./roost-data).")
@click.option("--insecure", is_flag=True, help="Do not verify the server's certificate (testing only).")
@click.option("--require-2fa", "require_2fa", is_flag=True,
              help="Require two-factor authentication: prints the new key and its QR code (shown once).")
def generate(name: str, clearance: str, permission: tuple[str, ...], key_type: str, months: int | None,
             password_prompt: bool, password_file: Path | None, out: Path | None, pem: bool, offline: bool,
             ca_cert: Path | None, ca_key: Path | None, url: str | None, cert: Path | None, ca: Path | None,
             data_dir: Path | None, insecure: bool, require_2fa: bool) -> None:
    """Generate a client certificate NAME and save its package (.zip with .pfx, .crt, .key, README.txt).

    With --offline nothing is registered: upload the package afterwards (roost certs upload NAME.zip's .pfx).
    """
    password = _password(password_prompt, password_file)
    if offline and require_2fa:
        raise CliError("--require-2fa needs the server, which keeps the key: generate online instead.")
    if offline:
        click.echo(_offline(name, key_type, password, months, ca_cert, ca_key, out, pem))
        return
    if ca_cert or ca_key:
        raise CliError("--ca-cert and --ca-key go with --offline (the server issues from its own CA).")
    endpoint = Endpoint.resolve(url, cert, ca, data_dir, insecure)
    body: dict[str, Any] = {"Name": name, "SecurityClearance": _clearance(clearance),
                            "Permissions": _permissions(permission), "KeyType": key_type}
    if months:
        body["ExpirationMonths"] = months
    if password:
        body["Password"] = password
    if require_2fa:
        from roost.cli.twofactor import enrolment_text, new_key

        body["TwoFactorAuthenticationKey"] = new_key(endpoint)
    response = endpoint.request("POST", "/admin/certificates", body=body, expect=(200,))
    click.echo(_save_package(response.body, name, out, pem, bool(password)))
    if require_2fa:
        click.echo(enrolment_text(body["TwoFactorAuthenticationKey"], name, endpoint.url))


def _offline(name: str, key_type: str, password: str | None, months: int | None, ca_cert: Path | None,
             ca_key: Path | None, out: Path | None, pem: bool) -> str:
    from roost.pki.issuance import offline_package  # only this path needs key generation

    if (ca_cert is None) != (ca_key is None):
        raise CliError("--ca-cert and --ca-key go together: the CA's certificate and its private key.")
    lifetime_days = round((months or 60) * 30.4375)
    package = offline_package(
        name, key_type, password, lifetime_days=lifetime_days,  # type: ignore[arg-type]
        ca_cert_pem=ca_cert.read_bytes() if ca_cert else None, ca_key_pem=ca_key.read_bytes() if ca_key else None,
        ca_key_password=os.environ.get("ROOST_CA_KEY_PASSWORD") or None,
    )
    issuer = "self-signed" if ca_cert is None else f"issued by {ca_cert}"
    saved = _save_package(package.zip_bytes, name, out, pem, bool(password))
    return f"{saved}\nMade offline ({issuer}); register it with: roost certs upload <the .pfx or .crt> --name {name}"


@certs.command()
@click.argument("file", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("--name", required=True, help="Name of the registration.")
@click.option("--clearance", default="User", show_default=True, help="User, Operator or ClusterAdmin.")
@click.option("--permission", "-p", multiple=True, metavar="DB=ACCESS", help="Database access; repeat for more.")
@click.option("--password-prompt", is_flag=True, help="The .pfx is protected: ask for its passphrase.")
@click.option("--password-file", type=click.Path(path_type=Path), default=None, help="Read it from a file instead.")
@click.option("--require-2fa", "require_2fa", is_flag=True,
              help="Require two-factor authentication: prints the new key and its QR code (shown once).")
@server_options
def upload(endpoint: Endpoint, file: Path, name: str, clearance: str, permission: tuple[str, ...],
           password_prompt: bool, password_file: Path | None, require_2fa: bool) -> None:
    """Register an existing certificate: FILE is a .crt/.pem (PEM), .cer (DER), .pfx (one or a collection), or a
    package .zip made by `roost certs generate --offline` (its .crt is sent, never its key)."""
    password = _password(password_prompt, password_file, "existing passphrase")
    data = file.read_bytes()
    if zipfile.is_zipfile(io.BytesIO(data)):
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            crts = [n for n in archive.namelist() if n.endswith(".crt") and n != "roost-ca.crt"]
            if len(crts) != 1:
                raise CliError(f"{file} is a zip without exactly one .crt; upload the certificate file itself.")
            data = archive.read(crts[0])
    body: dict[str, Any] = {"Name": name, "Certificate": base64.b64encode(data).decode(),
                            "SecurityClearance": _clearance(clearance), "Permissions": _permissions(permission)}
    if password:
        body["Password"] = password
    if require_2fa:
        from roost.cli.twofactor import new_key

        body["TwoFactorAuthenticationKey"] = new_key(endpoint)
    endpoint.request("PUT", "/admin/certificates", body=body, expect=(201,))
    listed = endpoint.request("GET", "/admin/certificates",
                              params={"name": name, "secondary": "true", "metadataOnly": "true"}).json()
    thumbprints = [e["Thumbprint"] for e in listed["Results"]]
    click.echo(f"Registered '{name}': {', '.join(thumbprints)}")
    if require_2fa:
        from roost.cli.twofactor import enrolment_text

        click.echo(enrolment_text(body["TwoFactorAuthenticationKey"], name, endpoint.url))


@certs.command(name="list")
@click.option("--filter", "text", default=None, help="Only names or thumbprints containing this text.")
@click.option("--clearance", default=None, help="Only this clearance (User, Operator, ClusterAdmin, ClusterNode).")
@click.option("--state", type=click.Choice(["valid", "expiring", "expired"]), default=None)
@click.option("--secondary", is_flag=True, help="Include the secondary members of collections.")
@click.option("--json", "as_json", is_flag=True, help="Print the server's JSON.")
@server_options
def list_(endpoint: Endpoint, text: str | None, clearance: str | None, state: str | None, secondary: bool,
          as_json: bool) -> None:
    """List the registered certificates, with expiry and last use."""
    params = {"metadataOnly": "true"}
    if text:
        params["filter"] = text
    if clearance:
        params["clearance"] = _clearance(clearance)
    if state:
        params["state"] = state
    if secondary:
        params["secondary"] = "true"
    result = endpoint.request("GET", "/admin/certificates", params=params).json()
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    rows = []
    for entry in result["Results"]:
        name = entry["Name"] + (" (disabled)" if entry.get("Disabled") else "")
        if entry.get("CollectionPrimaryKey"):
            name += " (secondary)"
        rows.append([name, clearance_label(entry["SecurityClearance"]), entry["Thumbprint"],
                     relative_expiry(entry.get("NotAfter")), _relative_past(entry.get("LastUsedDate")),
                     _permissions_text(entry)])
    click.echo(_table(rows, ["NAME", "CLEARANCE", "THUMBPRINT", "EXPIRES", "LAST USED", "ACCESS"]))
    if result.get("WellKnownAdminCerts"):
        click.echo(f"Well-known admin certificates (settings): {', '.join(result['WellKnownAdminCerts'])}")


def _show_entry(entry: dict[str, Any]) -> str:
    secondaries = entry.get("CollectionSecondaryKeys") or []
    fields = [
        ("Name", entry["Name"]),
        ("Thumbprint", entry["Thumbprint"]),
        ("Clearance", clearance_label(entry["SecurityClearance"])),
        ("Access", _permissions_text(entry)),
        ("Valid from", entry.get("NotBefore") or "-"),
        ("Expires", f"{entry.get('NotAfter') or '-'} ({relative_expiry(entry.get('NotAfter'))})"),
        ("Last used", _relative_past(entry.get("LastUsedDate"))),
        ("Disabled", "yes" if entry.get("Disabled") else "no"),
        ("Pinning hash", entry.get("PublicKeyPinningHash") or "-"),
    ]
    if secondaries:
        fields.append(("Collection", f"primary of {len(secondaries)}: {', '.join(secondaries)}"))
    if entry.get("CollectionPrimaryKey"):
        fields.append(("Collection", f"secondary of {entry['CollectionPrimaryKey']}"))
    width = max(len(k) for k, _ in fields)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in fields)


@certs.command()
@click.argument("thumbprint")
@click.option("--json", "as_json", is_flag=True, help="Print the server's JSON.")
@server_options
def show(endpoint: Endpoint, thumbprint: str, as_json: bool) -> None:
    """Show one certificate (a secondary's thumbprint shows its collection's primary)."""
    result = endpoint.request("GET", "/admin/certificates", params={"thumbprint": thumbprint},
                              expect=(200, 404))
    if result.status == 404:
        raise CliError(f"There is no certificate with thumbprint '{thumbprint}' on {endpoint.url}.", 1)
    entry = result.json()["Results"][0]
    click.echo(json.dumps(entry, indent=2) if as_json else _show_entry(entry))


@certs.command()
@click.argument("thumbprint")
@click.option("--name", default=None, help="New name.")
@click.option("--clearance", default=None, help="New clearance: User, Operator or ClusterAdmin.")
@click.option("--permission", "-p", multiple=True, metavar="DB=ACCESS",
              help="Set this database's access (added to the others); repeat for more.")
@click.option("--remove-permission", multiple=True, metavar="DB", help="Remove this database's access.")
@click.option("--disable/--enable", "disabled", default=None, help="Refuse (or accept again) this certificate.")
@click.option("--require-2fa/--remove-2fa", "two_factor", default=None,
              help="Give it a new two-factor key (printed once with its QR code), or remove its key.")
@server_options
def edit(endpoint: Endpoint, thumbprint: str, name: str | None, clearance: str | None, permission: tuple[str, ...],
         remove_permission: tuple[str, ...], disabled: bool | None, two_factor: bool | None) -> None:
    """Change a certificate's name, clearance, database access, or disable it."""
    found = endpoint.request("GET", "/admin/certificates", params={"thumbprint": thumbprint, "metadataOnly": "true"},
                             expect=(200, 404))
    if found.status == 404:
        raise CliError(f"There is no certificate with thumbprint '{thumbprint}' on {endpoint.url}.", 1)
    current = found.json()["Results"][0]
    permissions = dict(current.get("Permissions") or {})
    permissions.update(_permissions(permission))
    for db in remove_permission:
        permissions = {k: v for k, v in permissions.items() if k.casefold() != db.casefold()}
    body = {
        "Thumbprint": current["Thumbprint"],
        "Name": name or current["Name"],
        "SecurityClearance": _clearance(clearance) if clearance else current["SecurityClearance"],
        "Permissions": permissions,
        "Disabled": current.get("Disabled", False) if disabled is None else disabled,
    }
    if two_factor:
        from roost.cli.twofactor import new_key

        body["TwoFactorAuthenticationKey"] = new_key(endpoint)
    params = {"deleteTwoFactorConfiguration": "true"} if two_factor is False else None
    endpoint.request("POST", "/admin/certificates/edit", params=params, body=body, expect=(201,))
    state = " (disabled)" if body["Disabled"] else ""
    click.echo(f"Updated '{body['Name']}' ({current['Thumbprint']}): "
               f"{clearance_label(body['SecurityClearance'])}, "
               f"{_permissions_text(body)}{state}")
    if two_factor:
        from roost.cli.twofactor import enrolment_text

        click.echo(enrolment_text(body["TwoFactorAuthenticationKey"], body["Name"], endpoint.url))
    elif two_factor is False:
        click.echo("Two-factor authentication removed: the certificate no longer needs a code.")


@certs.command()
@click.argument("thumbprint")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@server_options
def delete(endpoint: Endpoint, thumbprint: str, yes: bool) -> None:
    """Delete a certificate (a collection's primary deletes the whole collection). It is refused at once."""
    if not yes:
        click.confirm(f"Delete the certificate {thumbprint} from {endpoint.url}?", abort=True)
    endpoint.request("DELETE", "/admin/certificates", params={"thumbprint": thumbprint}, expect=(204,))
    click.echo(f"Deleted {thumbprint}.")


@certs.command()
@server_options
def purge(endpoint: Endpoint) -> None:
    """Delete every expired certificate you are allowed to delete."""
    deleted = endpoint.request("DELETE", "/admin/certificates/purge").json() or {}
    entries = deleted.get("Deleted") or []
    if not entries:
        click.echo("No expired certificates to purge.")
    for entry in entries:
        click.echo(f"Deleted {entry['Name']} ({entry['Thumbprint']})")


@certs.command()
@click.option("--out", type=click.Path(path_type=Path), default=Path("ClusterCertificatesCollection.pfx"),
              show_default=True)
@server_options
def export(endpoint: Endpoint, out: Path) -> None:
    """Save the server's certificates (no keys, no passphrase), for another server to upload and trust."""
    response = endpoint.request("GET", "/admin/certificates/export", expect=(200,))
    out.write_bytes(response.body)
    count = len(load_certificates(response.body)) if response.body else 0
    click.echo(f"Wrote {out} ({count} certificate{'s' if count != 1 else ''}). Upload it on the other server: "
               f"roost certs upload {out} --name <this server> --clearance Operator")


@certs.command()
@click.option("--json", "as_json", is_flag=True, help="Print the server's JSON.")
@server_options
def whoami(endpoint: Endpoint, as_json: bool) -> None:
    """Show the certificate you are connected with, as the server sees it."""
    response = endpoint.request("GET", "/certificates/whoami")
    entry = response.json()
    if entry is None:
        raise CliError("The server sees no client certificate: pass --cert.", 1)
    click.echo(json.dumps(entry, indent=2) if as_json else _show_entry(entry))


# roost server-cert -------------------------------------------------------------------------------------------


@click.group(name="server-cert")
def server_cert() -> None:
    """Replace or renew the server's own certificate, without a restart."""


@server_cert.command()
@click.argument("pfx", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("--password-prompt", is_flag=True, help="The .pfx is protected: ask for its passphrase.")
@click.option("--password-file", type=click.Path(path_type=Path), default=None, help="Read it from a file instead.")
@click.option("--when-every-node-confirmed", "wait", is_flag=True,
              help="In a cluster: swap once every node has confirmed (RavenDB's default), not at once on each node.")
@server_options
def replace(endpoint: Endpoint, pfx: Path, password_prompt: bool, password_file: Path | None, wait: bool) -> None:
    """Serve the certificate in PFX (with its private key) from now on; open connections keep working.

    In a cluster every node gets it (docs/cluster.md); progress: roost cluster replacement.
    """
    password = _password(password_prompt, password_file, "existing passphrase")
    body: dict[str, Any] = {"Certificate": base64.b64encode(pfx.read_bytes()).decode()}
    if password:
        body["Password"] = password
    result = endpoint.request("POST", "/admin/certificates/replace-cluster-cert",
                              params={"replaceImmediately": "false" if wait else "true"}, body=body,
                              expect=(201,)).json()
    progress = endpoint.request("GET", "/admin/certificates/replacement/status", expect=(200, 404))
    if progress.status == 200 and progress.json()["Replaced"] < len(progress.json()["Nodes"]):
        status = progress.json()
        click.echo(f"Server certificate {result['Thumbprint']} sent to every node: {status['Confirmations']} of "
                   f"{len(status['Nodes'])} confirmed, {status['Replaced']} replaced (roost cluster replacement).")
        return
    click.echo(f"Server certificate replaced: {result['OldThumbprint']} -> {result['Thumbprint']}. Both stay "
               "trusted as Cluster Node; delete 'Old Server Certificate - can delete' when no node uses it.")


@server_cert.command()
@server_options
def renew(endpoint: Endpoint) -> None:
    """Renew Roost's generated server certificate now (a new key and certificate from the internal CA)."""
    result = endpoint.request("POST", "/admin/certificates/refresh", expect=(200,)).json()
    click.echo(f"Server certificate renewed: {result['OldThumbprint']} -> {result['Thumbprint']}.")


# Keys made here: roost certs request / renew ----------------------------------------------------------------


def _file_stem(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name).strip(".") or "certificate"


def _write_key_files(directory: Path, name: str, crt: bytes, key: bytes, force: bool) -> str:
    """<name>.crt, <name>.key and <name>.pem (certificate + key), each 0600, written only after the server
    answered; with ``force`` an existing file is replaced atomically (a reload never reads half a file)."""
    directory.mkdir(parents=True, exist_ok=True)
    stem = _file_stem(name)
    files = {directory / f"{stem}.crt": crt, directory / f"{stem}.key": key, directory / f"{stem}.pem": crt + key}
    existing = [str(p) for p in files if p.exists()]
    if existing and not force:
        raise CliError(f"{', '.join(existing)} already exist(s); choose another --out or pass --force.")
    for path, data in files.items():
        partial = path.with_name(f".{path.name}.partial")
        _write_private(partial, data)
        os.replace(partial, path)
    thumbprint = load_certificates(crt)[0].thumbprint
    return (f"Wrote {directory / stem}.crt, .key and .pem (certificate {thumbprint}); the private key was made "
            "here and never sent.")


@certs.command()
@click.argument("name")
@click.option("--clearance", default="User", show_default=True, help="User, Operator or ClusterAdmin.")
@click.option("--permission", "-p", multiple=True, metavar="DB=ACCESS",
              help="Database access of a User certificate (Read, ReadWrite, Admin); repeat for more.")
@click.option("--months", type=click.IntRange(1, 1200), default=None, help="Lifetime in months (default 5 years).")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), default=Path("."), show_default=True,
              help="Directory for <NAME>.crt, <NAME>.key and <NAME>.pem.")
@click.option("--force", is_flag=True, help="Replace files of the same name.")
@server_options
def request(endpoint: Endpoint, name: str, clearance: str, permission: tuple[str, ...], months: int | None,
            out: Path, force: bool) -> None:
    """Make a key here (EC P-256), send only a certificate request, and save the certificate the server signs."""
    key_pem, csr_pem = new_request(name)
    body: dict[str, Any] = {"Name": name, "SecurityClearance": _clearance(clearance),
                            "Permissions": _permissions(permission), "CertificateRequest": csr_pem}
    if months:
        body["ExpirationMonths"] = months
    response = endpoint.request("POST", "/admin/certificates/csr", body=body, expect=(201,))
    click.echo(_write_key_files(out, name, response.body, key_pem, force))


@certs.command(name="renew")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Directory for the successor's <NAME>.crt/.key/.pem (default: the directory of --cert).")
@click.option("--force", is_flag=True, help="Replace files of the same name (for a cron job renewing in place).")
@click.option("--daemon", is_flag=True,
              help="Keep running: renew each certificate at two thirds of its lifetime (files replaced in place), "
                   "then run --reload.")
@click.option("--reload", "reload_command", default=None, metavar="COMMAND",
              help="A shell command run after each renewal (e.g. 'systemctl reload myapp').")
@server_options
def renew_client(endpoint: Endpoint, out: Path | None, force: bool, daemon: bool, reload_command: str | None) -> None:
    """Renew the certificate given with --cert: a new key made here, a successor with the same name, clearance,
    permissions and 2FA; the old certificate stays valid until it expires (or, unused, is retired by the server)."""
    if endpoint.cert is None:
        raise CliError("Pass --cert: the certificate (PEM with its key) to renew.")
    if not daemon:
        _renew_once(endpoint, out or endpoint.cert.parent, force)
        _reload(reload_command)
        return
    _renew_daemon(endpoint, out or endpoint.cert.parent, reload_command)


def _renew_once(endpoint: Endpoint, out: Path, force: bool) -> Path:
    """One renewal: the successor's files in ``out``; returns the path of its .pem."""
    assert endpoint.cert is not None
    own = load_certificates(endpoint.cert.read_bytes())[0]
    key_pem, csr_pem = new_request(own.common_name)
    response = endpoint.request("POST", "/certificates/renew", body={"CertificateRequest": csr_pem}, expect=(201,))
    successor = load_certificates(response.body)[0]
    click.echo(_write_key_files(out, successor.common_name, response.body, key_pem, force))
    return out / f"{_file_stem(successor.common_name)}.pem"


def _reload(command: str | None) -> None:
    if command is None:
        return
    result = subprocess.run(command, shell=True, check=False)  # the operator's own command line
    if result.returncode != 0:
        click.echo(f"Warning: the reload command exited with {result.returncode}: {command}", err=True)


RETRY_SECONDS = (60.0, 3600.0)  # after a failed renewal: from a minute, doubling, to an hour


def _renew_daemon(endpoint: Endpoint, out: Path, reload_command: str | None) -> None:
    """Renew at two thirds of each certificate's lifetime, forever (a systemd service or a container's sidecar):
    the files are replaced atomically in place, then the reload command tells the application."""
    retry = RETRY_SECONDS[0]
    while True:
        assert endpoint.cert is not None
        own = load_certificates(endpoint.cert.read_bytes())[0]
        due = own.not_before + (own.not_after - own.not_before) * 2 / 3
        wait = (due - clock.now()).total_seconds()
        if wait > 0:
            click.echo(f"Next renewal of '{own.common_name}' ({own.thumbprint}) at {due:%Y-%m-%d %H:%M} UTC.")
            time.sleep(min(wait, 3600.0))
            continue
        try:
            pem = _renew_once(endpoint, out, True)
        except CliError as error:
            click.echo(f"Renewal failed, retrying in {retry:.0f} s: {error.message}", err=True)
            time.sleep(retry)
            retry = min(retry * 2, RETRY_SECONDS[1])
            continue
        retry = RETRY_SECONDS[0]
        endpoint = dataclasses.replace(endpoint, cert=pem)
        _reload(reload_command)
