"""Long-running database operations (RavenDB's ``/databases/{db}/operations/*``): a bulk insert registers under the
id the client took from ``next-operation-id``, can be killed by it, and leaves its state for
``/operations/state`` to answer.

Per server process: a kill or a state request is answered by the process that runs the operation (with
``--workers N`` another worker answers 404 for it).
"""

from __future__ import annotations

import secrets
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

# Finished operations kept for /operations/state (the client asks right after a failure); the oldest go first.
_KEEP_FINISHED = 1000


@dataclass
class Operation:
    id: int
    database: str  # folded
    kind: str
    status: str = "InProgress"  # RavenDB's OperationStatus: InProgress, Completed, Faulted, Canceled
    killed: bool = False
    result: dict[str, Any] = field(default_factory=dict)

    def state(self) -> dict[str, Any]:
        """RavenDB's ``OperationState`` JSON."""
        return {"Status": self.status, "Result": self.result or None, "Progress": None}


class Operations:
    def __init__(self) -> None:
        self._running: dict[int, Operation] = {}
        self._finished: OrderedDict[int, Operation] = OrderedDict()

    @staticmethod
    def next_id() -> int:
        """A fresh id: random below 2**52, so that it stays exact in JavaScript and no two workers share one."""
        return 1 + secrets.randbelow(1 << 52)

    def start(self, operation_id: int, database: str, kind: str) -> Operation | None:
        """Register a running operation; None when one with this id runs already."""
        if operation_id in self._running:
            return None
        self._finished.pop(operation_id, None)
        operation = Operation(operation_id, database.casefold(), kind)
        self._running[operation_id] = operation
        return operation

    def finish(self, operation: Operation, status: str, result: dict[str, Any]) -> None:
        operation.status, operation.result = status, result
        self._running.pop(operation.id, None)
        self._finished[operation.id] = operation
        while len(self._finished) > _KEEP_FINISHED:
            self._finished.popitem(last=False)

    def find(self, database: str, operation_id: int) -> Operation | None:
        operation = self._running.get(operation_id) or self._finished.get(operation_id)
        return operation if operation is not None and operation.database == database.casefold() else None

    def kill(self, database: str, operation_id: int) -> bool:
        operation = self._running.get(operation_id)
        if operation is None or operation.database != database.casefold():
            return False
        operation.killed = True
        return True
