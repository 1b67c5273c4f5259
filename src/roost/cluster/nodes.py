"""The nodes of a cluster: who they are, where clients reach them, and which server certificate each presents.

A node registers itself in shared storage when it starts listening: its tag, its public URL, its server
certificate and a heartbeat (every HEARTBEAT_SECONDS; live while seen within LIVE_SECONDS, by the storage's clock).
The tag is ``Settings.node_tag`` when set, else the tag this data directory had before (its node id is kept in
``<data-dir>/node.id``), else the first free one (A, B, ..., Z, AA, ...). A tag belongs to one node id: a second
node asking for it by setting fails to start.

Every registered node's server certificate is ClusterNode on every node (``Identifier.set_cluster_nodes``) and an
anchor of the TLS handshake. ``remove`` (``roost cluster remove-node``) deletes the entry and revokes the
certificate: every node hears it before the call returns and refuses it from its next request; it is remembered
with the deleted thumbprints, so implicit trust never brings it back and the removed node cannot register again
with it.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import uuid
from collections.abc import Callable
from pathlib import Path

from roost.errors import BadRequestError, ConfigurationError, NotFoundError
from roost.pki.inspect import CertificateInfo, describe_der
from roost.security.audit import AuditLog, Event
from roost.security.identity import Identifier, Identity
from roost.security.implicit import DeletedThumbprints
from roost.storage.base import NodeRow, Storage
from roost.tls import ServerTLS

log = logging.getLogger("roost.cluster")

HEARTBEAT_SECONDS = 1.0
LIVE_SECONDS = 5.0
NODE_ID_FILE = "node.id"
_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def candidate_tags() -> list[str]:
    """A, B, ..., Z, AA, AB, ..., ZZ: the order free tags are handed out."""
    return [*_LETTERS, *(a + b for a in _LETTERS for b in _LETTERS)]


def node_id(data_dir: Path) -> str:
    """This data directory's node id (created on first use; the workers of one node share it)."""
    path = data_dir / NODE_ID_FILE
    if path.exists():
        return path.read_text().strip()
    value = str(uuid.uuid4())
    staged = data_dir / f".{NODE_ID_FILE}.{value}"
    fd = os.open(staged, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(value + "\n")
    try:
        os.link(staged, path)  # complete or absent: a worker starting at the same moment never reads half of it
    except FileExistsError:
        value = path.read_text().strip()
    finally:
        staged.unlink()
    return value


async def tentative_tag(storage: Storage, data_dir: Path) -> str:
    """The tag a node without a NodeTag setting will claim when it listens: the one its data directory's node id
    had before, else the first free one. Known before the node listens, so that its audit chain is named by it from
    the first entry; the claim at start confirms it (or, when another node took it meanwhile, picks the next)."""
    own = await asyncio.to_thread(node_id, data_dir)
    rows = await storage.list_nodes(LIVE_SECONDS)
    mine = [r.tag for r in rows if r.node_id == own]
    taken = {r.tag for r in rows}
    return mine[0] if mine else next(t for t in candidate_tags() if t not in taken)


class ClusterNodes:
    def __init__(self, storage: Storage, identifier: Identifier, deleted: DeletedThumbprints, audit: AuditLog,
                 data_dir: Path, *, wanted_tag: str | None, tls: Callable[[], ServerTLS | None],
                 shared: bool = True, tentative_tag: str | None = None) -> None:
        self._storage = storage
        self._identifier = identifier
        self._deleted = deleted
        self._audit = audit
        self._data_dir = data_dir
        self._wanted_tag = wanted_tag
        self._tentative_tag = tentative_tag  # what the audit log was named by before the claim
        self._tls = tls
        # Shared storage (PostgreSQL): other nodes need the heartbeat. An embedded store has one node, always live,
        # and no write every second.
        self._shared = shared
        self.node_id = ""
        self.tag = "A"  # until registered (a server that never listens stays the single node A)
        self.url = ""
        self.thumbprint = ""
        self._certificate = ""
        self._heartbeat: asyncio.Task[None] | None = None
        self._refresh: asyncio.Task[None] | None = None
        self._stale = False
        self.etag = 0  # of the live topology, as of the last heartbeat or change heard (Refresh-Topology)
        self._revoked: set[str] = set()  # the deleted thumbprints, as last read (and revocations heard since)
        self.removed = False
        self.on_change: list[Callable[[str], None]] = []  # other cluster topics (the certificate replacement)

    async def watch(self) -> None:
        await self._storage.watch_cluster(self._heard)

    def _heard(self, topic: str) -> None:
        """A cluster notification, on the listener's callback: revocations apply before the next request."""
        if topic.startswith("revoke:"):
            self._revoked.add(topic.removeprefix("revoke:"))
            self._identifier.forget_cluster_node(topic.removeprefix("revoke:"))
            return
        if topic.startswith("nodes:"):
            # A node registered (or changed) this certificate: trusted from the next request, unless revoked.
            info = describe_der(base64.b64decode(topic.removeprefix("nodes:")))
            if info.thumbprint not in self._revoked and info.thumbprint != self.thumbprint:
                tls = self._tls()
                if tls is not None:
                    tls.add_anchors([info.der])
                self._identifier.add_cluster_node(info)
            topic = "nodes"
        if topic == "*":
            # Revocations may have been missed: no other node's certificate counts until read back from storage.
            self._identifier.set_cluster_nodes([])
        if topic in ("nodes", "*"):
            self._schedule_refresh()
        for changed in self.on_change:
            changed(topic)

    def _schedule_refresh(self) -> None:
        self._stale = True  # a refresh already reading goes round once more: it may have read before this change
        if self._refresh is None or self._refresh.done():
            self._refresh = asyncio.get_running_loop().create_task(self._refresh_while_stale())

    async def _refresh_while_stale(self) -> None:
        while self._stale:
            self._stale = False
            try:
                await self.refresh()
            except Exception as exc:  # storage unreachable: the channel's return ("*") triggers the next one
                log.warning("Could not read the cluster's nodes: %s", exc)

    async def register(self, url: str, certificate: CertificateInfo | None) -> str:
        """Claim this node's tag with its URL and server certificate; start the heartbeat. Returns the tag."""
        self.node_id = await asyncio.to_thread(node_id, self._data_dir)
        self.url = url
        self.thumbprint = certificate.thumbprint if certificate else ""
        self._certificate = base64.b64encode(certificate.der).decode() if certificate else ""
        if self.thumbprint and self.thumbprint in await self._deleted.all():
            raise ConfigurationError(
                f"This node's server certificate {self.thumbprint} was revoked when the node was removed from the "
                "cluster (roost cluster remove-node). To join again, start it with a new server certificate (a new "
                "data directory, or Security.Certificate.Path).")
        self.tag = await self._claim()
        await self.refresh()
        if self._shared:
            self._heartbeat = asyncio.get_running_loop().create_task(self._beat())
        return self.tag

    async def _claim(self) -> str:
        if self._wanted_tag is not None:
            if not await self._storage.claim_node(self._wanted_tag, self.node_id, self.url, self._certificate):
                raise ConfigurationError(
                    f"The node tag {self._wanted_tag} (node_tag) belongs to another node of this cluster. Choose "
                    "another tag, or remove that node first (roost cluster remove-node).")
            return self._wanted_tag
        rows = await self._storage.list_nodes(LIVE_SECONDS)
        mine = [r.tag for r in rows if r.node_id == self.node_id]
        taken = {r.tag for r in rows}
        first = [self._tentative_tag] if self._tentative_tag else []
        for tag in [*first, *mine, *(t for t in candidate_tags() if t not in taken)]:
            if await self._storage.claim_node(tag, self.node_id, self.url, self._certificate):
                if self._tentative_tag and tag != self._tentative_tag:
                    # Another node took the tentative tag between this node's start and its claim: the audit log
                    # is named by the tag claimed from now on (entries before it name the tentative one).
                    log.warning("Node tag %s was taken meanwhile; this node is %s", self._tentative_tag, tag)
                    self._audit.node = tag
                return tag
        raise ConfigurationError("No free node tag is left (A to ZZ); set node_tag.")

    async def change_certificate(self, certificate: CertificateInfo) -> None:
        """This node now presents ``certificate`` (a replacement or renewal): the other nodes trust it as a node."""
        self.thumbprint = certificate.thumbprint
        self._certificate = base64.b64encode(certificate.der).decode()
        if self.node_id and not self.removed:
            await self._storage.claim_node(self.tag, self.node_id, self.url, self._certificate)
            await self.refresh()

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_SECONDS)
            try:
                if not await self._storage.node_heartbeat(self.tag, self.node_id):
                    self.removed = True
                    log.warning("This node (%s) was removed from the cluster; it no longer registers itself. Its "
                                "server certificate is refused by the other nodes.", self.tag)
                    return
                self.etag = await self._storage.nodes_version()
            except Exception as exc:  # storage down: the next beat tries again
                log.warning("Node heartbeat failed: %s", exc)

    def stale_topology(self, client_etag: str | None) -> bool:
        """For ``Refresh-Topology``: the client's ``Topology-Etag`` is not this cluster's (as of the last heartbeat,
        at most a second old); ``"None"`` (no topology yet) asks nothing, the client is fetching it anyway."""
        if client_etag is None or not self.node_id:
            return False
        try:
            return int(client_etag.strip().strip('"')) < self.etag
        except ValueError:  # "None", or anything else a client sends: never a 400 for this header
            return False

    async def version(self) -> int:
        """The topology's Etag now (and remembered for ``stale_topology``)."""
        self.etag = await self._storage.nodes_version()
        return self.etag

    async def refresh(self) -> None:
        """Trust every registered node's server certificate as ClusterNode (and in the TLS handshake)."""
        rows = await self._storage.list_nodes(LIVE_SECONDS)
        deleted = await self._deleted.all()
        self._revoked |= deleted
        infos = []
        for row in rows:
            if row.certificate and row.tag != self.tag:  # this node's own are the Identifier's server certificates
                info = describe_der(base64.b64decode(row.certificate))
                if info.thumbprint not in deleted:
                    infos.append(info)
        tls = self._tls()
        if tls is not None and infos:
            tls.add_anchors([i.der for i in infos])
        self._identifier.set_cluster_nodes(infos)
        self.etag = await self._storage.nodes_version()

    async def all(self) -> list[NodeRow]:
        return await self._storage.list_nodes(LIVE_SECONDS)

    async def live(self) -> list[NodeRow]:
        """The live nodes, this one first (a client's preferred node is the first listed)."""
        return self._live_of(await self.all())

    def _live_of(self, rows: list[NodeRow]) -> list[NodeRow]:
        rows = [r for r in rows if r.live or r.tag == self.tag]
        if not any(r.tag == self.tag for r in rows):  # not registered (yet, or any more): it still answers
            rows.append(NodeRow(self.tag, self.node_id, self.url, self._certificate, True))
        return sorted(rows, key=lambda r: (r.tag != self.tag, len(r.tag), r.tag))

    async def certificates(self) -> list[bytes]:
        """The DER of every registered node's server certificate (the export's ClusterNode entries)."""
        return [base64.b64decode(r.certificate) for r in await self.all() if r.certificate]

    async def remove(self, caller: Identity, tag: object) -> dict[str, object]:
        if not isinstance(tag, str) or not tag.strip():
            raise BadRequestError("The query parameter 'tag' is required (the node's tag, e.g. B).")
        tag = tag.strip().upper()
        if tag == self.tag:
            raise BadRequestError(
                f"Node {tag} is the node answering this request; remove it through another node of the cluster.")
        rows = await self.all()
        row = next((r for r in rows if r.tag == tag), None)
        if row is None:
            raise NotFoundError(f"There is no node with tag '{tag}' in this cluster.")
        thumbprint = describe_der(base64.b64decode(row.certificate)).thumbprint if row.certificate else ""
        # A certificate other nodes present too (one cluster certificate after replace-cluster-cert) stays trusted.
        shared = any(r.tag != tag and r.certificate == row.certificate for r in rows) if thumbprint else False
        revoked = [thumbprint] if thumbprint and not shared else []
        if revoked:
            await self._deleted.remember(revoked)
        if await self._storage.remove_node(tag, revoked) is None:
            raise NotFoundError(f"There is no node with tag '{tag}' in this cluster.")
        for thumbprint_revoked in revoked:  # on SQLite there is no notification; here at least
            self._identifier.forget_cluster_node(thumbprint_revoked)
        self._audit.record(Event.CLUSTER_NODE_REMOVED, actor=caller, Tag=tag, Url=row.url,
                           Thumbprint=thumbprint or None, Revoked=bool(revoked))
        return {"Tag": tag, "Url": row.url, "Thumbprint": thumbprint or None,
                "RevokedThumbprint": revoked[0] if revoked else None}

    async def stop(self) -> None:
        for task in (self._heartbeat, self._refresh):
            if task is not None:
                task.cancel()
        if self.node_id and not self.removed and self._shared:
            try:
                await self._storage.node_heartbeat(self.tag, self.node_id, stopping=True)
            except Exception as exc:
                log.warning("Could not mark this node stopped: %s", exc)
