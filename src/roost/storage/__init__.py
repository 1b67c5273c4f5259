"""Storage: one async protocol (``base.Storage``) with an embedded SQLite implementation and a PostgreSQL one.

No SQL outside this package.
"""

from __future__ import annotations

from pathlib import Path

from roost.storage.base import Storage


async def open_storage(url: str | None, data_dir: Path) -> Storage:
    """``None`` or ``sqlite:///path`` opens the embedded SQLite store; ``postgresql://`` a shared cluster store."""
    if url and url.startswith(("postgresql://", "postgres://")):
        from roost.storage.postgres import PostgresStorage  # noqa: PLC0415 - optional backend

        return await PostgresStorage.open(url)
    from roost.storage.sqlite import SqliteStorage  # noqa: PLC0415

    path = Path(url.removeprefix("sqlite:///")) if url else data_dir / "roost.db"
    return await SqliteStorage.open(path)
