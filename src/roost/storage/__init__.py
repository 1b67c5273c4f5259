"""Storage: one async protocol (``base.Storage``) with an embedded SQLite implementation and a PostgreSQL one.

No SQL outside this package.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from roost.storage.base import Storage


async def open_storage(url: str | None, data_dir: Path) -> Storage:
    """``None`` or ``sqlite:///path`` opens the embedded SQLite store; ``postgresql://`` a shared cluster store."""
    if url and url.startswith(("postgresql://", "postgres://")):
        # The cluster backend is imported only when asked for: the embedded default does not need asyncpg.
        postgres = importlib.import_module("roost.storage.postgres")
        storage: Storage = await postgres.PostgresStorage.open(url)
        return storage
    from roost.storage.sqlite import DATABASE_FILE, SqliteStorage

    path = Path(url.removeprefix("sqlite:///")) if url else data_dir / DATABASE_FILE
    return await SqliteStorage.open(path)
