"""A certificate's history, read from the hash-chained audit log (issue 17): who created it, each change of its
name, clearance, permissions or state as a diff, who renewed, retired or deleted it.

The audit log is per node: a node's history shows what was done through that node (a cluster's other nodes keep
their own chains; docs/security-hosted.md).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

LIMIT = 500  # entries of one certificate's history; the newest are kept


def certificate_history(entries: Iterable[dict[str, Any]], thumbprint: str) -> list[dict[str, Any]]:
    """The audit entries about ``thumbprint``, oldest first, each with ``Changes`` against the one before."""
    thumbprint = thumbprint.strip().upper()
    state: dict[str, Any] | None = None
    disabled = False
    history: list[dict[str, Any]] = []
    for entry in entries:
        mine = next((c for c in entry.get("Certificates") or [] if isinstance(c, dict)
                     and c.get("Thumbprint") == thumbprint), None)
        related = thumbprint in (entry.get("RenewalOf"), entry.get("Successor"), entry.get("Thumbprint"))
        if mine is None and not related:
            continue
        item: dict[str, Any] = {key: entry[key] for key in ("Seq", "Time", "Event", "Actor", "ActorThumbprint", "Node")
                                if key in entry}
        changes: list[dict[str, Any]] = []
        if mine is not None:
            changes = _diff(state, mine)
            state = mine
            item.update(Name=mine.get("Name"), Clearance=mine.get("Clearance"), Permissions=mine.get("Permissions"))
            if isinstance(entry.get("Disabled"), bool) and entry["Disabled"] != disabled:
                changes.append({"What": "Disabled", "From": disabled, "To": entry["Disabled"]})
                disabled = entry["Disabled"]
            if entry.get("TwoFactorRemoved"):
                changes.append({"What": "TwoFactor", "From": True, "To": False})
            elif entry.get("TwoFactorAdded"):
                changes.append({"What": "TwoFactorKey", "From": None, "To": "new key"})
        for key in ("RenewalOf", "Successor"):
            if entry.get(key):
                item[key] = entry[key]
        item["Changes"] = changes
        history.append(item)
    return history[-LIMIT:]


def _diff(before: dict[str, Any] | None, after: dict[str, Any]) -> list[dict[str, Any]]:
    if before is None:
        return []  # the first entry is where it begins: its state, not a change
    changes: list[dict[str, Any]] = []
    for what in ("Name", "Clearance"):
        if before.get(what) != after.get(what):
            changes.append({"What": what, "From": before.get(what), "To": after.get(what)})
    old = {str(k).casefold(): (k, v) for k, v in (before.get("Permissions") or {}).items()}
    new = {str(k).casefold(): (k, v) for k, v in (after.get("Permissions") or {}).items()}
    for key in sorted(old.keys() | new.keys()):
        was, now = old.get(key), new.get(key)
        if was is not None and now is not None and was[1] == now[1]:
            continue
        database = (now or was)[0]  # type: ignore[index]
        changes.append({"What": "Permission", "Database": database, "From": was[1] if was else None,
                        "To": now[1] if now else None})
    return changes
