"""HiLo ranges: RavenDB's adaptive size, and the next/return endpoints over HTTP."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
import requests

from conftest import RunningServer
from roost.clock import wire_date
from roost.http.routes.hilo import MAX_RANGE, MIN_RANGE, capacity

NOW = dt.datetime(2026, 11, 23, 8, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("last_size", "seconds_ago", "expected"),
    [
        (0, None, MIN_RANGE),  # a first request
        (32, None, MIN_RANGE),  # no date: treated as a first request
        (32, 1, 64),  # back quickly: twice as many
        (MAX_RANGE, 1, MAX_RANGE),  # but never more than the cap
        (64, 45, 64),  # in between: the same
        (64, 600, 32),  # back rarely: half
        (32, 600, MIN_RANGE),  # but never fewer than the floor
    ],
)
def test_capacity_adapts_to_how_often_a_client_comes_back(
    last_size: int, seconds_ago: int | None, expected: int
) -> None:
    last = None if seconds_ago is None else NOW - dt.timedelta(seconds=seconds_ago)
    assert capacity(last_size, last, NOW) == expected


@pytest.fixture(scope="module")
def database(server: RunningServer, admin: requests.Session) -> str:
    name = f"hilo-{uuid.uuid4().hex[:8]}"
    assert admin.put(f"{server.url}/admin/databases?name={name}").status_code == 201
    return name


def test_ranges_follow_each_other_and_grow_for_a_busy_client(
    server: RunningServer, admin: requests.Session, database: str
) -> None:
    base = f"{server.url}/databases/{database}/hilo/next?tag=orders&identityPartsSeparator=/"
    first = admin.get(f"{base}&lastBatchSize=0&lastRangeAt=&lastMax=0").json()
    assert (first["Prefix"], first["Low"], first["High"], first["ServerTag"]) == ("orders/", 1, 32, "A")
    assert first["LastRangeAt"].endswith("Z") and "." in first["LastRangeAt"]
    second = admin.get(f"{base}&lastBatchSize=32&lastRangeAt={first['LastRangeAt']}&lastMax=32").json()
    assert (second["Low"], second["High"], second["LastSize"]) == (33, 96, 64)
    other_tag = admin.get(f"{server.url}/databases/{database}/hilo/next?tag=users").json()
    assert (other_tag["Prefix"], other_tag["Low"]) == ("users/", 1)


def test_return_gives_back_only_the_latest_range(server: RunningServer, admin: requests.Session, database: str) -> None:
    base = f"{server.url}/databases/{database}/hilo"
    taken = admin.get(f"{base}/next?tag=returns").json()
    assert (taken["Low"], taken["High"]) == (1, 32)
    assert admin.put(f"{base}/return?tag=returns&end=32&last=5").status_code == 204
    assert admin.get(f"{base}/next?tag=returns").json()["Low"] == 6
    # A stale return (the range is no longer the latest) changes nothing: ids are never handed out twice.
    assert admin.put(f"{base}/return?tag=returns&end=32&last=5").status_code == 204
    assert admin.get(f"{base}/next?tag=returns").json()["Low"] == 38


def test_hilo_needs_write_access(server: RunningServer, database: str) -> None:
    reader = server.generate("hilo-reader", "ValidUser", {database: "Read"})
    writer = server.generate("hilo-writer", "ValidUser", {database: "ReadWrite"})
    url = f"{server.url}/databases/{database}/hilo/next?tag=things&lastRangeAt={wire_date(NOW)}"
    assert server.session(reader.pem_path).get(url).status_code == 403
    assert server.session(writer.pem_path).get(url).status_code == 200
