"""Document changes for RavenDB's Changes API (``/databases/{db}/changes``): every committed write of this process
is published to the subscribers of its database, in commit order.

A subscriber holds a bounded queue: one that cannot keep up (a client that stopped reading) is dropped rather than
buffered for (``overflowed``), and its stream is closed with a message saying so.

Per process: a write made by another worker process or node reaches the subscribers of that process only
(docs/ravendb-clients.md, "Changes").
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from roost.storage.base import BatchResult

QUEUE_SIZE = 10_000  # changes waiting for one subscriber before it is dropped


@dataclass(frozen=True, slots=True)
class DocumentChange:
    type: str  # RavenDB's DocumentChangeTypes: Put, Delete
    id: str
    collection: str | None
    change_vector: str | None

    def to_wire(self) -> dict[str, object]:
        return {"Type": self.type, "Id": self.id, "CollectionName": self.collection,
                "ChangeVector": self.change_vector}


@dataclass(eq=False)
class Subscription:
    database: str  # folded
    queue: asyncio.Queue[DocumentChange] = field(default_factory=lambda: asyncio.Queue(QUEUE_SIZE))
    overflowed: bool = False
    wake: asyncio.Event = field(default_factory=asyncio.Event)


class ChangeHub:
    def __init__(self) -> None:
        self._subscribers: dict[str, set[Subscription]] = {}

    def subscribe(self, database: str) -> Subscription:
        subscription = Subscription(database.casefold())
        self._subscribers.setdefault(subscription.database, set()).add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        subscribers = self._subscribers.get(subscription.database)
        if subscribers is not None:
            subscribers.discard(subscription)
            if not subscribers:
                del self._subscribers[subscription.database]

    def publish_batch(self, database: str, results: list[BatchResult]) -> None:
        """The committed results of one batch (nothing for a DELETE of what was not there)."""
        subscribers = self._subscribers.get(database.casefold())
        if not subscribers:
            return
        # Counters commands are RavenDB's CounterChange, not a document change.
        changes = [DocumentChange("Put", r.document.id, r.document.collection, r.document.change_vector)
                   if r.document is not None else DocumentChange("Delete", r.id, r.collection, None)
                   for r in results if (r.document is not None and r.kind == "PUT") or r.deleted]
        for subscription in list(subscribers):
            for change in changes:
                try:
                    subscription.queue.put_nowait(change)
                except asyncio.QueueFull:
                    subscription.overflowed = True
                    subscription.wake.set()
                    self.unsubscribe(subscription)
                    break

    def close_database(self, database: str) -> None:
        """The database was deleted: wake its subscribers (their streams check and close)."""
        for subscription in list(self._subscribers.get(database.casefold(), ())):
            subscription.wake.set()
