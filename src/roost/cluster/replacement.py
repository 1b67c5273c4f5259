"""RavenDB's server-certificate replacement across the nodes of a cluster (reference ravendb-certificates.md, 7).

``POST /admin/certificates/replace-cluster-cert`` on any node checks the new .pfx, seals it under a secret derived
from the cluster's CA key (only nodes holding the shared CA can open it; the upload's password goes no further),
and writes the replacement to shared storage with the nodes registered at that moment. Then every node:

1. confirms: opens the .pfx, checks it (postponed while its NotBefore is in the future) and writes its
   confirmation (each node writes only its own entry, so confirmations never race);
2. swaps when every listed node has confirmed, or when its own certificate expires within 3 days, or at once
   with ``replaceImmediately=true``, and writes that it replaced;
3. when every listed node has replaced, the replacement is deleted.

A node acts on the cluster notification of every step, at start, and every POLL_SECONDS (the 3-day rule needs no
event). A node that is down confirms when it starts again. ``GET /admin/certificates/replacement/status`` shows
each node's progress. Clocks are each node's own (``roost.clock``).
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import logging
import secrets
from typing import Any

from roost import clock
from roost.cluster.nodes import ClusterNodes
from roost.errors import BadRequestError, NotFoundError, RoostError
from roost.pki.inspect import load_certificates
from roost.security.audit import AuditLog, Event
from roost.security.identity import AuthStatus, Identity
from roost.security.server_certificate import ServerCertificates
from roost.storage.base import Storage

log = logging.getLogger("roost.certificates")

KEY = "cluster.server_certificate_replacement"
TOPIC = "replacement"
SWAP_BEFORE_EXPIRY = dt.timedelta(days=3)
POLL_SECONDS = 2.0
_SECRET_LABEL = "roost server certificate replacement"
REPLACEMENT = Identity(AuthStatus.CLUSTER_ADMIN, display_name="the cluster's certificate replacement")


def _mark_key(state: dict[str, Any], tag: str) -> str:
    return f"{KEY}.{state['Id']}.{tag}"


class CertificateReplacement:
    def __init__(self, storage: Storage, nodes: ClusterNodes, server_certificates: ServerCertificates,
                 audit: AuditLog) -> None:
        self._storage = storage
        self._nodes = nodes
        self._server_certificates = server_certificates
        self._audit = audit
        self._lock = asyncio.Lock()
        self._poll: asyncio.Task[None] | None = None
        self._checks: set[asyncio.Task[None]] = set()

    def _secret(self) -> str:
        authority = self._server_certificates.authority
        if authority is None:
            raise BadRequestError("This server runs without TLS; there is no server certificate to replace.")
        return authority.derived_secret(_SECRET_LABEL)

    def heard(self, topic: str) -> None:
        """A cluster topic: another node started, confirmed or finished a step (or changes were missed)."""
        if topic in (TOPIC, "*", "nodes"):
            task = asyncio.get_running_loop().create_task(self._check_logged())
            self._checks.add(task)
            task.add_done_callback(self._checks.discard)

    def start_polling(self) -> None:
        self._poll = asyncio.get_running_loop().create_task(self._polling())

    async def stop(self) -> None:
        for task in [self._poll, *self._checks]:
            if task is not None:
                task.cancel()

    async def _polling(self) -> None:
        while True:
            await self._check_logged()
            await asyncio.sleep(POLL_SECONDS)

    async def _check_logged(self) -> None:
        try:
            await self.check()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("The server-certificate replacement step failed on this node; will try again")

    async def start(self, caller: Identity, body: Any, *, immediately: bool) -> dict[str, Any]:
        """replace-cluster-cert: spread the new certificate; this node confirms (and may swap) before answering."""
        secret = self._secret()
        sealed, offered = await asyncio.to_thread(self._server_certificates.offered, body, secret)
        current = self._server_certificates.current
        assert current is not None
        tags = [r.tag for r in await self._nodes.all()]
        if self._nodes.tag not in tags:
            tags.append(self._nodes.tag)
        state = {"Id": secrets.token_hex(8), "Thumbprint": offered.thumbprint,
                 "OldThumbprint": current.info.thumbprint, "ReplaceImmediately": immediately, "Nodes": tags,
                 "StartedBy": self._nodes.tag, "Certificate": base64.b64encode(sealed).decode()}
        async with self._lock:
            earlier = await self._storage.get_setting(KEY)
            if earlier is not None:  # a newer replacement wins, as in RavenDB (one server/cert item)
                await self._forget(earlier)
            await self._storage.put_setting(KEY, state)
        self._audit.record(Event.SERVER_CERTIFICATE_REPLACEMENT_STARTED, actor=caller, New=offered.thumbprint,
                           Old=current.info.thumbprint, Nodes=tags, ReplaceImmediately=immediately)
        await self._storage.notify_cluster(TOPIC)
        await self.check()
        # The answer's shape stays RavenDB's; per-node progress is GET /admin/certificates/replacement/status.
        return {"OldThumbprint": current.info.thumbprint, "Thumbprint": offered.thumbprint}

    async def status(self) -> dict[str, Any]:
        state = await self._storage.get_setting(KEY)
        if state is None:
            raise NotFoundError("No server-certificate replacement is under way.")
        marks = await self._marks(state)
        nodes = [{"Tag": tag, "Confirmed": bool(mark.get("Confirmed")), "Replaced": bool(mark.get("Replaced")),
                  **({"Error": mark["Error"]} if mark.get("Error") else {})} for tag, mark in marks.items()]
        return {"Confirmations": sum(n["Confirmed"] for n in nodes), "Replaced": sum(n["Replaced"] for n in nodes),
                "Thumbprint": state["Thumbprint"], "OldThumbprint": state["OldThumbprint"],
                "ReplaceImmediately": state["ReplaceImmediately"], "Nodes": nodes}

    async def reset(self, caller: Identity) -> None:
        """RavenDB's replacement/reset: abandon the replacement under way (nodes that swapped keep the new one)."""
        async with self._lock:
            state = await self._storage.get_setting(KEY)
            if state is None:
                raise NotFoundError("No server-certificate replacement is under way.")
            await self._forget(state)
        self._audit.record(Event.SERVER_CERTIFICATE_REPLACEMENT_ABANDONED, actor=caller, New=state["Thumbprint"],
                           Old=state["OldThumbprint"], Nodes=state["Nodes"])
        await self._storage.notify_cluster(TOPIC)

    async def _marks(self, state: dict[str, Any]) -> dict[str, dict[str, Any]]:
        return {tag: await self._storage.get_setting(_mark_key(state, tag)) or {} for tag in state["Nodes"]}

    async def _forget(self, state: dict[str, Any]) -> None:
        for tag in state["Nodes"]:
            await self._storage.delete_setting(_mark_key(state, tag))
        await self._storage.delete_setting(KEY)

    async def check(self) -> None:
        """This node's next step, if any (idempotent: every notification, the start and the poll run it)."""
        current = self._server_certificates.current
        if current is None:
            return
        async with self._lock:
            state = await self._storage.get_setting(KEY)
            tag = self._nodes.tag
            if state is None or tag not in state["Nodes"]:
                return
            marks = await self._marks(state)
            mine = marks[tag]
            before = dict(mine)
            if current.info.thumbprint == state["Thumbprint"]:
                mine.update(Confirmed=True, Replaced=True)
            else:
                sealed = base64.b64decode(state["Certificate"])
                if not mine.get("Confirmed"):
                    try:
                        offered = load_certificates(sealed, self._secret())[0]
                    except RoostError as exc:
                        mine.update(Confirmed=False, Error=f"Cannot open the new certificate here (does this node "
                                    f"share the cluster's CA directory?): {exc.message}")
                        offered = None
                    if offered is not None and offered.not_before <= clock.now():
                        mine.update(Confirmed=True)
                        mine.pop("Error", None)
                all_confirmed = all(m.get("Confirmed") for m in marks.values())
                expiring = current.info.not_after - clock.now() < SWAP_BEFORE_EXPIRY
                if mine.get("Confirmed") and (all_confirmed or state["ReplaceImmediately"] or expiring):
                    why = ("every node confirmed" if all_confirmed else "replaceImmediately" if
                           state["ReplaceImmediately"] else "the old certificate expires within 3 days")
                    log.info("Swapping to the cluster's new server certificate %s (%s)", state["Thumbprint"], why)
                    await self._server_certificates.install_pfx(REPLACEMENT, sealed, self._secret())
                    mine.update(Replaced=True)
            if mine != before:
                await self._storage.put_setting(_mark_key(state, tag), mine)
            finished = all(m.get("Replaced") for m in marks.values())
            if finished:
                await self._forget(state)
                log.info("Every node serves the new server certificate %s", state["Thumbprint"])
        if mine != before or finished:
            await self._storage.notify_cluster(TOPIC)
