"""The store contract, change feed: snapshot then every commit once and in order,
exact resume, resync after compaction, kind filter, close (every backend).

Split from test_contract.py (shared helpers: contract_support.py; backends: conftest.py).
Every read from a watch is bounded by a timeout so a bug fails instead of hanging.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from federation.errors import Conflict, NotFound
from federation.store import Store, open_store
from federation.store.backend import Changes, Delete, Put, Snapshot
from federation.store.typed import TypedChanges, TypedSnapshot, encode, storage_key
from tests.store.contract_support import (
    WATCH_TIMEOUT,
    apply,
    changes_until,
    cluster,
    current_state,
    endpoint,
    eventually,
    gateway,
    link,
    next_msg,
    only_changes,
    revisions,
)

# ========================================================================= change feed


async def test_feed_snapshot_then_every_commit_once_in_order(
    store: Store, open_stores: Any
) -> None:
    """Concurrent writers on several connections; the watcher sees each commit exactly once."""
    await store.clusters.create(cluster("pre"))
    await store.endpoints.create(endpoint("10.4.0.1"))
    before = await current_state(store)

    it = store.watch()
    snap = await next_msg(it)
    assert isinstance(snap, TypedSnapshot) and not snap.resync
    assert snap.revision == await store.revision()
    mirror: dict[str, Any] = {}
    apply(mirror, snap)
    assert mirror == before

    others = [await open_stores(), await open_stores()]
    writers = [store, *others]
    committed: dict[int, set[tuple[str, str]]] = {}
    rng = random.Random(42)

    async def writer(s: Store, wid: int) -> None:
        for i in range(12):
            choice = rng.randrange(4)
            name = f"w{wid}-{i % 4}"
            if choice == 0:
                v = await s.clusters.put(cluster(name, i))
                committed[v.revision] = {("put", f"clusters/{name}")}
            elif choice == 1:
                found = await s.clusters.find(name)
                if found is None:
                    continue
                try:
                    rev = await s.clusters.delete(name, found.revision)
                except (Conflict, NotFound):
                    continue
                committed[rev] = {("delete", f"clusters/{name}")}
            elif choice == 2:
                ep = endpoint(f"10.5.{wid}.{i}")
                gw = gateway(i, cluster_name=f"g{wid}")
                rev = await s.commit(
                    [
                        Put(storage_key("endpoints", ep.key), encode(ep)),
                        Put(storage_key("gateways", gw.key), encode(gw)),
                    ]
                )
                committed[rev] = {("put", f"endpoints/{ep.key}"), ("put", f"gateways/{gw.key}")}
            else:
                eps = [endpoint(f"10.6.{wid}.{j}", service=f"s{wid}") for j in range(i % 3 + 1)]
                before_ = {e.record.key for e in await s.endpoints.list(f"shop/s{wid}/east/")}
                rev = await s.replace_endpoints("east", "shop", f"s{wid}", eps)
                want = {e.key for e in eps}
                events = {("put", f"endpoints/{k}") for k in want - before_}
                events |= {("delete", f"endpoints/{k}") for k in before_ - want}
                if events:
                    committed[rev] = events

    received: list[Any] = []

    async def reader() -> None:
        async for msg in it:
            received.append(msg)

    reading = asyncio.create_task(reader())
    try:
        await asyncio.gather(*(writer(s, i) for i, s in enumerate(writers * 2)))
        target = max(committed)

        async def caught_up() -> bool:
            return bool(received) and received[-1].revision >= target

        await eventually(caught_up, WATCH_TIMEOUT, f"watch reaching revision {target}")
        await asyncio.sleep(0.1)  # anything extra (a duplicate) would arrive now
    finally:
        reading.cancel()

    only_changes(received)
    seen = revisions(received)
    assert seen == sorted(set(seen)), f"revisions not strictly increasing: {seen}"
    assert seen == sorted(committed), (
        f"missing {sorted(set(committed) - set(seen))}, extra {sorted(set(seen) - set(committed))}"
    )
    for msg in received:
        got = {(c.type, f"{c.kind}/{c.key}") for c in msg.changes}
        assert got == committed[msg.revision], f"events of revision {msg.revision}"
        apply(mirror, msg)
    assert mirror == await current_state(store), "snapshot + changes != current state"


async def test_feed_resumes_exactly_after_a_revision(store: Store, open_stores: Any) -> None:
    it = store.watch()
    assert isinstance(await next_msg(it), TypedSnapshot)
    r1 = (await store.clusters.create(cluster("a"))).revision
    r2 = (await store.clusters.create(cluster("b"))).revision
    got = await changes_until(it, r2)
    assert revisions(got) == [r1, r2]
    last_seen = got[-1].revision
    await it.aclose()  # the watcher goes away ...

    other = await open_stores()  # ... writes continue elsewhere ...
    r3 = (await other.clusters.update(cluster("a", 1), r1)).revision
    r4 = await other.clusters.delete("b")
    r5 = (await other.endpoints.create(endpoint())).revision

    resumed_store = await open_stores()  # ... and it comes back on a new connection
    resumed = resumed_store.watch(since=last_seen)
    msgs = only_changes(await changes_until(resumed, r5))
    assert revisions(msgs) == [r3, r4, r5], "resume lost or repeated a revision"
    assert [(c.type, c.key) for m in msgs for c in m.changes] == [
        ("put", "a"),
        ("delete", "b"),
        ("put", endpoint().key),
    ]
    assert msgs[0].changes[0].record == cluster("a", 1)

    mid = store.watch(since=r3)
    assert revisions(only_changes(await changes_until(mid, r5))) == [r4, r5]

    head = store.watch(since=await store.revision())
    pending = asyncio.ensure_future(anext(head))
    await asyncio.sleep(0.3)
    assert not pending.done(), "watch(since=current revision) must wait for new writes"
    r6 = (await other.gateways.create(gateway())).revision
    msg = await asyncio.wait_for(pending, WATCH_TIMEOUT)
    assert isinstance(msg, TypedChanges) and msg.revision == r6


async def test_compacted_history_resyncs_with_current_state(store: Store) -> None:
    r1 = (await store.clusters.create(cluster("a"))).revision
    r2 = (await store.clusters.create(cluster("b"))).revision
    r3 = (await store.clusters.update(cluster("a", 3), r1)).revision
    r4 = await store.clusters.delete("b")
    r5 = (await store.clusters.create(cluster("c"))).revision
    assert r1 < r2 < r3 < r4 < r5
    await store.compact(r4)

    it = store.watch(since=r2)
    snap = await next_msg(it)
    assert isinstance(snap, TypedSnapshot), "a compacted since must yield a Snapshot first"
    assert snap.resync is True
    assert snap.revision >= r5
    assert {i.record.key: (i.record, i.revision) for i in snap.items} == {
        "a": (cluster("a", 3), r3),
        "c": (cluster("c"), r5),
    }
    r6 = (await store.clusters.create(cluster("d"))).revision
    assert revisions(only_changes(await changes_until(it, r6))) == [r6]

    kept = store.watch(since=r4)  # history after the compaction point is still there
    assert revisions(only_changes(await changes_until(kept, r6))) == [r5, r6]

    fresh = store.watch()
    snap = await next_msg(fresh)
    assert isinstance(snap, TypedSnapshot) and snap.resync is False
    assert sorted(i.record.key for i in snap.items) == ["a", "c", "d"]


async def test_raw_compacted_watch_resyncs(store: Store) -> None:
    b = store.backend
    r1 = await b.commit([Put("/raw/a", b"1")])
    r2 = await b.commit([Put("/raw/a", b"2")])
    await b.commit([Put("/raw/b", b"3")])
    await b.compact(r2)
    it = b.watch("/raw/", since=r1)
    snap = await next_msg(it)
    assert isinstance(snap, Snapshot) and snap.resync
    assert {kv.key: kv.value for kv in snap.items} == {"/raw/a": b"2", "/raw/b": b"3"}
    r4 = await b.commit([Delete("/raw/a")])
    msg = await next_msg(it)
    assert isinstance(msg, Changes) and msg.revision == r4
    assert [(e.type, e.key, e.value) for e in msg.events] == [("delete", "/raw/a", None)]


async def test_watch_kind_filter(store: Store) -> None:
    await store.clusters.create(cluster("c1"))
    e1 = endpoint("10.7.0.1")
    await store.endpoints.create(e1)
    it = store.watch(kind="endpoints")
    snap = await next_msg(it)
    assert isinstance(snap, TypedSnapshot)
    assert [i.record for i in snap.items] == [e1]

    await store.clusters.create(cluster("c2"))  # not an endpoint: not delivered
    e2 = endpoint("10.7.0.2")
    mixed = await store.commit(
        [
            Put(storage_key("clusters", "c3"), encode(cluster("c3"))),
            Put(storage_key("endpoints", e2.key), encode(e2)),
        ]
    )
    await store.links.create(link())
    deleted = await store.endpoints.delete(e1.key)
    msgs = only_changes(await changes_until(it, deleted))
    assert revisions(msgs) == [mixed, deleted]
    assert [(c.type, c.kind, c.key, c.record) for c in msgs[0].changes] == [
        ("put", "endpoints", e2.key, e2)
    ]
    assert [(c.type, c.key, c.record) for c in msgs[1].changes] == [("delete", e1.key, None)]

    since = store.watch(since=0, kind="clusters")
    first = await next_msg(since)
    if isinstance(first, TypedSnapshot):  # revision 0 may be compacted history on etcd
        assert sorted(i.record.key for i in first.items) == ["c1", "c2", "c3"]
    else:
        got = [first, *await changes_until(since, mixed)]
        assert all(c.kind == "clusters" for m in got for c in m.changes)
        assert [c.key for m in got for c in m.changes] == ["c1", "c2", "c3"]


async def test_closing_the_store_ends_open_watches(store_url: str) -> None:
    s = await open_store(store_url)
    closed = False
    try:
        it = s.watch()
        assert isinstance(await next_msg(it), TypedSnapshot)
        pending = asyncio.ensure_future(anext(it))
        await asyncio.sleep(0.2)
        await asyncio.wait_for(s.close(), WATCH_TIMEOUT)
        closed = True
        with pytest.raises(StopAsyncIteration):
            await asyncio.wait_for(pending, WATCH_TIMEOUT)
    finally:
        if not closed:
            await s.close()
