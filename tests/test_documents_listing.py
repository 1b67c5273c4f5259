"""``GET /databases/{db}/docs?start=&pageSize=`` without ids pages like RavenDB: most recently changed first."""

from __future__ import annotations

from conftest import RunningServer


def test_listing_pages_the_most_recently_changed_first(server: RunningServer) -> None:
    admin = server.admin()
    assert admin.put(f"{server.url}/admin/databases", params={"name": "listing"}).status_code == 201
    url = f"{server.url}/databases/listing/docs"
    for i in range(1, 6):
        assert admin.put(url, params={"id": f"items/{i}"}, json={"N": i}).status_code == 201
    assert admin.put(url, params={"id": "items/2"}, json={"N": 22}).status_code == 201  # changed last

    first = admin.get(url, params={"start": 0, "pageSize": 2}).json()
    second = admin.get(url, params={"start": 2, "pageSize": 2}).json()
    third = admin.get(url, params={"start": 4, "pageSize": 2}).json()
    ids = [[d["@metadata"]["@id"] for d in page["Results"]] for page in (first, second, third)]
    assert ids == [["items/2", "items/5"], ["items/4", "items/3"], ["items/1"]]
    assert first["TotalResults"] == second["TotalResults"] == 5
    # Paging visits every document exactly once.
    assert sorted(sum(ids, [])) == [f"items/{i}" for i in range(1, 6)]


def test_listing_a_database_one_may_not_read_is_refused(server: RunningServer) -> None:
    admin = server.admin()
    assert admin.put(f"{server.url}/admin/databases", params={"name": "listing-secret"}).status_code == 201
    other = server.generate("listing-other", "ValidUser", {"listing-elsewhere": "Read"})
    refused = server.session(other.pem_path).get(f"{server.url}/databases/listing-secret/docs",
                                                 params={"start": 0, "pageSize": 5})
    assert refused.status_code == 403 and "Results" not in refused.text
