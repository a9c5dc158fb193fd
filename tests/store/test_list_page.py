"""`list_page`: one page of a prefix as a key range, the same on every backend.

`GET /api/v1/services` pages at the store with it (benchmarks/registry/rest.py),
so its edges matter: inclusive start, the prefix bound, the limit, a start past
the prefix, and the typed collection's record keys.
"""

from __future__ import annotations

from datetime import UTC, datetime

from federation.model import Port, ServiceExport
from federation.store import Store
from federation.store.backend import Put

T0 = datetime(2026, 1, 1, tzinfo=UTC)


async def test_list_page_reads_a_bounded_key_range(store: Store) -> None:
    backend = store.backend
    keys = [f"/meshfed/p/{c}" for c in "abcdefg"] + ["/meshfed/q/a", "/meshfed/o/z"]
    await backend.commit([Put(k, k.encode()) for k in keys])
    page = await backend.list_page("/meshfed/p/", "/meshfed/p/", 3)
    assert [kv.key for kv in page] == ["/meshfed/p/a", "/meshfed/p/b", "/meshfed/p/c"]
    assert page[0].value == b"/meshfed/p/a" and page[0].mod_revision > 0
    page = await backend.list_page("/meshfed/p/", "/meshfed/p/c", 3)  # start is inclusive
    assert [kv.key for kv in page] == ["/meshfed/p/c", "/meshfed/p/d", "/meshfed/p/e"]
    page = await backend.list_page("/meshfed/p/", "/meshfed/p/f\0", 10)  # never past the prefix
    assert [kv.key for kv in page] == ["/meshfed/p/g"]
    assert await backend.list_page("/meshfed/p/", "/meshfed/r", 10) == []
    page = await backend.list_page("/meshfed/p/", "/meshfed/", 2)  # start before the prefix
    assert [kv.key for kv in page] == ["/meshfed/p/a", "/meshfed/p/b"]


async def test_collection_pages_by_record_key(store: Store) -> None:
    for ns, name, cluster in [
        ("a", "x", "c1"),
        ("a", "x", "c2"),
        ("a", "y", "c1"),
        ("b", "x", "c1"),
    ]:
        await store.exports.put(ServiceExport(cluster, ns, name, T0, (Port(80),)))
    page = await store.exports.list_page("a/", "a/x/c1\0", 10)
    assert [v.record.key for v in page] == ["a/x/c2", "a/y/c1"]
    page = await store.exports.list_page("", "", 2)
    assert [v.record.key for v in page] == ["a/x/c1", "a/x/c2"]
