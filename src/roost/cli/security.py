"""``roost security ...`` and ``roost audit ...``: the hosted-product security settings and the audit log."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

from roost.cli.client import EXIT_USAGE, CliError, Endpoint, server_options

if TYPE_CHECKING:
    from roost.settings import Settings


@click.group()
def security() -> None:
    """Server-wide security settings (IP allowlist)."""


@security.command("allowed-ips")
@click.argument("addresses", nargs=-1)
@click.option("--set", "set_", is_flag=True, help="Replace the list with ADDRESSES.")
@click.option("--clear", is_flag=True, help="Allow every address again.")
@click.option("--force", is_flag=True, help="Apply even if the list leaves out your own address.")
@server_options
def allowed_ips(endpoint: Endpoint, addresses: tuple[str, ...], set_: bool, clear: bool, force: bool) -> None:
    """Show or change Security.AllowedIPs (IPv4/IPv6 addresses and CIDR ranges; empty means everyone).

    \b
      roost security allowed-ips                          show the list
      roost security allowed-ips --set 203.0.113.7 10.0.0.0/8
      roost security allowed-ips --clear

    A change applies to new connections at once and to open ones on their next request. Needs Operator.
    """
    if set_ and clear:
        raise CliError("Use --set ADDRESS... or --clear, not both.", EXIT_USAGE)
    if addresses and not set_:
        raise CliError("To change the list, write --set before the addresses.", EXIT_USAGE)
    if set_ or clear:
        result = endpoint.json("PUT", "/admin/security/allowed-ips", params={"force": "true" if force else None},
                               body={"AllowedIPs": [] if clear else list(addresses)})
    else:
        result = endpoint.json("GET", "/admin/security/allowed-ips")
    if result["Everyone"]:
        click.echo("Allowed IPs: everyone (the list is empty).")
    else:
        click.echo("Allowed IPs:")
        for entry in result["AllowedIPs"]:
            click.echo(f"  {entry}")


@click.group()
def audit() -> None:
    """The hash-chained audit log (<data-dir>/audit.log)."""


@audit.command("verify", context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.option("--data-dir", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="The node's data directory (its audit.log). Default: roost-data.")
@click.option("--node", default=None, help="The node whose chain to verify (default: this node's NodeTag).")
@click.pass_context
def audit_verify(ctx: click.Context, data_dir: Path | None, node: str | None) -> None:
    """Check every entry's hash chain; report the first altered or missing entry (exit 1).

    \b
      roost audit verify --data-dir /srv/roost-b
      roost audit verify --node B --data-dir /srv/roost-b --storage_url=postgresql://roost@db/roost

    The newest Seq and hash the node noted in its storage (SQLite or PostgreSQL: the same settings as
    `roost serve`, from roost.toml, ROOST_* or --Key=Value) also catch entries cut off the end.
    """
    import asyncio

    from roost.security import audit as audit_log
    from roost.settings import load_settings

    # --node stands for the node's NodeTag setting (checked as `roost serve` checks it).
    settings, _ = load_settings({"data_dir": data_dir, "node_tag": node}, list(ctx.args))
    path = settings.data_dir / audit_log.FILE_NAME
    # Without --node: this node's chain, named by the node its newest entry names (a node without a NodeTag
    # setting was given its tag by the cluster).
    tag = settings.node_tag or _newest_node(path) or audit_log.DEFAULT_NODE
    result = audit_log.verify(path, asyncio.run(_stored_head(settings, tag)), tag)
    click.echo(result.message)
    if not result.ok:
        raise SystemExit(1)


def _newest_node(path: Path) -> str | None:
    from roost.security.audit import AuditLog

    node = None
    for entry in AuditLog(path).entries():
        node = entry.get("Node") if isinstance(entry.get("Node"), str) else node
    return node


async def _stored_head(settings: Settings, node: str) -> tuple[int, str] | None:
    """The node's head, read through the Storage protocol from the store its server uses (an embedded store that
    does not exist yet is not created: nothing was ever noted)."""
    from roost.security.audit import stored_head
    from roost.storage import open_storage
    from roost.storage.sqlite import DATABASE_FILE

    if settings.storage_url is None and not (settings.data_dir / DATABASE_FILE).exists():
        return None
    storage = await open_storage(settings.storage_url, settings.data_dir)
    try:
        embedded = not (settings.storage_url or "").startswith("postgres")  # SQLite: one node wrote it
        return await stored_head(storage, node, single_node=embedded)
    finally:
        await storage.close()


@audit.command("tail")
@click.option("-n", "--limit", type=click.IntRange(1, 10000), default=20, show_default=True)
@click.option("--since", type=int, default=None, help="Entries after this Seq (oldest first).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line, as stored.")
@server_options
def audit_tail(endpoint: Endpoint, limit: int, since: int | None, as_json: bool) -> None:
    """The newest audit entries, read through GET /admin/audit (Operator)."""
    result = endpoint.json("GET", "/admin/audit", params={"limit": limit, "since": since})
    for entry in result["Entries"]:
        if as_json:
            click.echo(json.dumps(entry, ensure_ascii=False))
            continue
        rest = {k: v for k, v in entry.items() if k not in ("Seq", "Time", "Event", "Actor", "ActorThumbprint", "Prev")}
        actor = entry.get("Actor", "server")
        click.echo(f"{entry['Seq']:>6} {entry['Time']} {entry['Event']:<28} {actor}  "
                   f"{json.dumps(rest, ensure_ascii=False)}")
