"""The services record their own audit events, whoever calls them (issue 13): not only the HTTP routes."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from roost.security.audit import Event
from roost.server import Server
from roost.settings import load_settings


def test_a_database_created_and_deleted_without_http_is_audited(tmp_path: Path) -> None:
    async def scenario() -> list[dict[str, object]]:
        settings, _ = load_settings({"data_dir": tmp_path / "data", "port": 0}, environ={})
        server = await Server.create(settings)
        try:
            services = server.services
            await services.databases.create("audited-db", actor=None)
            assert await services.documents.exists("audited-db")
            assert await services.databases.delete("audited-db", actor=None)
            assert not await services.databases.delete("audited-db", actor=None)  # nothing to delete: no event
        finally:
            await server.stop()
        lines = (tmp_path / "data" / "audit.log").read_text().splitlines()
        return [json.loads(line) for line in lines]

    events = [(e["Event"], e.get("Database")) for e in asyncio.run(scenario())]
    assert (Event.DATABASE_CREATED.value, "audited-db") in events
    assert events.count((Event.DATABASE_DELETED.value, "audited-db")) == 1
