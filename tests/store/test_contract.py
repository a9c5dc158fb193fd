"""The store contract, held against every backend (SQLite, PostgreSQL, etcd).

Each test gets a fresh, empty store through the `store` fixture (see conftest.py),
parametrized over the three backends. What is asserted is what the registry relies
on: typed CRUD with optimistic concurrency, all-or-nothing multi-key commits, leases,
and a change feed with no gap and no duplicate that resumes and resyncs correctly.
Every read from a watch is bounded by a timeout so a bug fails instead of hanging.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from federation.errors import AlreadyExists, Conflict, LeaseNotFound, NotFound
from federation.model import (
    Cluster,
    Endpoint,
    Gateway,
    Link,
    Port,
    Record,
    ServiceExport,
    TrustDomain,
)
from federation.store import Store, open_store
from federation.store.backend import ABSENT, ANY, Changes, Delete, Put, Snapshot
from federation.store.typed import FeedMessage, TypedChanges, TypedSnapshot, encode, storage_key

WATCH_TIMEOUT = 10.0
NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"

# --------------------------------------------------------------------------- records


def cluster(name: str = "east", v: int = 0) -> Cluster:
    return Cluster(
        name=name,
        region="us-east-1",
        zone="us-east-1a",
        trust_domain=f"{name}.local",
        gateway_addresses=(f"10.0.0.{v % 250 + 1}:15443",),
        labels={"version": str(v)},
    )


def link(v: int = 0, a: str = "east", b: str = "west") -> Link:
    return Link(a, b, namespaces=(f"ns{v}",), mode="passthrough" if v % 2 else "terminating")


def export(v: int = 0, name: str = "cart", cluster_name: str = "east") -> ServiceExport:
    return ServiceExport(cluster_name, "shop", name, created=NOW, ports=(Port(8000 + v),))


def endpoint(
    address: str = "10.1.0.1", v: int = 1, *, cluster_name: str = "east", service: str = "cart"
) -> Endpoint:
    return Endpoint(cluster_name, "shop", service, address, (Port(8080),), zone="z1", weight=v)


def gateway(v: int = 0, cluster_name: str = "east") -> Gateway:
    return Gateway(cluster_name, (f"gw.{cluster_name}.example:{15443 + v}",))


def trust_domain(v: int = 0, name: str = "east.local") -> TrustDomain:
    return TrustDomain(name, (PEM,), sequence=v)


# collection attribute on Store -> factory of a record whose key does not depend on v
KINDS: dict[str, Callable[[int], Record]] = {
    "clusters": lambda v: cluster("east", v),
    "links": link,
    "exports": export,
    "endpoints": lambda v: endpoint("10.1.0.1", v),
    "gateways": gateway,
    "trust_domains": trust_domain,
}

# ---------------------------------------------------------------------- watch helpers


async def next_msg(it: AsyncIterator[Any], timeout: float = WATCH_TIMEOUT) -> Any:
    try:
        return await asyncio.wait_for(anext(it), timeout)
    except TimeoutError:
        pytest.fail(f"watch delivered nothing within {timeout} s")


async def changes_until(
    it: AsyncIterator[Any], revision: int, timeout: float = WATCH_TIMEOUT
) -> list[Any]:
    """Every message up to and including the first whose revision is >= `revision`."""
    out: list[Any] = []
    deadline = time.monotonic() + timeout
    while not out or out[-1].revision < revision:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            got = [m.revision for m in out]
            pytest.fail(f"watch did not reach revision {revision} in {timeout} s (got {got})")
        out.append(await next_msg(it, remaining))
    return out


def revisions(messages: list[Any]) -> list[int]:
    return [m.revision for m in messages]


def only_changes(messages: list[Any]) -> list[Any]:
    kinds = {type(m).__name__ for m in messages}
    assert kinds <= {"TypedChanges", "Changes"}, f"expected only Changes, got {kinds}"
    return messages


def apply(state: dict[str, Any], message: FeedMessage) -> None:
    """Mirror a typed feed into {kind/key: record}."""
    if isinstance(message, TypedSnapshot):
        state.clear()
        for item in message.items:
            state[f"{item.record.KIND}/{item.record.key}"] = item.record
        return
    for change in message.changes:
        full = f"{change.kind}/{change.key}"
        if change.type == "delete":
            assert full in state, f"delete of {full} which the mirror does not hold"
            del state[full]
        else:
            state[full] = change.record


async def current_state(store: Store) -> dict[str, Record]:
    state: dict[str, Record] = {}
    for coll in (
        store.clusters,
        store.links,
        store.exports,
        store.endpoints,
        store.gateways,
        store.trust_domains,
    ):
        for item in await coll.list():
            state[f"{coll.kind}/{item.record.key}"] = item.record
    return state


async def eventually(check: Callable[[], Any], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if await check():
            return
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout} s")
        await asyncio.sleep(0.05)


# ============================================================================== CRUD


@pytest.mark.parametrize("attr", list(KINDS))
async def test_crud_per_kind(store: Store, attr: str) -> None:
    coll = getattr(store, attr)
    make = KINDS[attr]
    r1 = make(1)
    key = r1.key

    v1 = await coll.create(r1)
    assert v1.record == r1
    assert v1.revision == v1.create_revision > 0
    got = await coll.get(key)
    assert (got.record, got.revision, got.create_revision, got.lease) == (
        r1,
        v1.revision,
        v1.revision,
        0,
    )
    assert await coll.find(key) == got
    assert [x.record for x in await coll.list()] == [r1]

    with pytest.raises(AlreadyExists):
        await coll.create(make(2))
    assert (await coll.get(key)).record == r1, "a failed create changed the record"

    r2 = make(2)
    v2 = await coll.update(r2, v1.revision)
    assert v2.revision > v1.revision
    assert v2.create_revision == v1.revision
    got = await coll.get(key)
    assert (got.record, got.revision, got.create_revision) == (r2, v2.revision, v1.revision)

    with pytest.raises(Conflict) as stale:
        await coll.update(make(3), v1.revision)
    assert stale.value.expected == v1.revision
    assert stale.value.actual == v2.revision
    got = await coll.get(key)
    assert (got.record, got.revision) == (r2, v2.revision), "a stale update changed the record"

    r4 = make(4)
    v4 = await coll.put(r4)
    assert v4.revision > v2.revision
    assert v4.create_revision == v1.revision
    assert (await coll.get(key)).record == r4

    with pytest.raises(Conflict):
        await coll.delete(key, v2.revision)
    got = await coll.get(key)
    assert (got.record, got.revision) == (r4, v4.revision), "a stale delete changed the record"

    deleted_at = await coll.delete(key, v4.revision)
    assert deleted_at > v4.revision
    assert await store.revision() >= deleted_at
    with pytest.raises(NotFound):
        await coll.get(key)
    assert await coll.find(key) is None
    assert await coll.list() == []
    with pytest.raises(NotFound):
        await coll.delete(key)
    with pytest.raises(Conflict) as gone:
        await coll.update(r4, v4.revision)
    assert gone.value.actual is None

    v5 = await coll.create(r1)  # a deleted key can be created again, with a new history
    assert v5.revision == v5.create_revision > deleted_at
    assert (await coll.get(key)).create_revision == v5.revision

    v6 = await coll.put(make(6))  # put on a key that has no record creates it
    await coll.delete(key)
    v7 = await coll.put(make(7))
    assert v7.revision == v7.create_revision > v6.revision
    assert (await coll.get(key)).record == make(7)


async def test_delete_without_revision_and_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        await store.clusters.get("nope")
    assert await store.clusters.find("nope") is None
    with pytest.raises(NotFound):
        await store.clusters.delete("nope")
    await store.clusters.create(cluster("east"))
    rev = await store.clusters.delete("east")
    assert await store.clusters.find("east") is None
    assert await store.revision() >= rev


async def test_list_by_prefix_is_exact_and_sorted(store: Store) -> None:
    eps = [
        endpoint("10.0.0.2", cluster_name="east", service="cart"),
        endpoint("10.0.0.1", cluster_name="east", service="cart"),
        endpoint("10.0.0.3", cluster_name="west", service="cart"),
        endpoint("10.0.0.4", cluster_name="east", service="cartx"),
        endpoint("10.0.0.5", cluster_name="east", service="car"),
    ]
    for ep in eps:
        await store.endpoints.create(ep)
    await store.clusters.create(cluster("cart"))  # another kind must never leak in

    def keys(items: list[Any]) -> list[str]:
        return [i.record.key for i in items]

    all_keys = sorted(ep.key for ep in eps)
    assert keys(await store.endpoints.list()) == all_keys
    assert keys(await store.endpoints.list("shop/cart/")) == [
        "shop/cart/east/10.0.0.1",
        "shop/cart/east/10.0.0.2",
        "shop/cart/west/10.0.0.3",
    ]
    assert keys(await store.endpoints.list("shop/cart/east/")) == [
        "shop/cart/east/10.0.0.1",
        "shop/cart/east/10.0.0.2",
    ]
    assert keys(await store.endpoints.list("shop/car")) == all_keys
    assert await store.endpoints.list("shop/nothing/") == []
    assert keys(await store.clusters.list()) == ["cart"]

    # '_' and '%' are ordinary characters in a prefix, not wildcards
    for name in ("a_b.local", "axb.local", "a.b.local", "a-b.local"):
        await store.trust_domains.create(trust_domain(name=name))
    assert keys(await store.trust_domains.list("a_")) == ["a_b.local"]
    assert keys(await store.trust_domains.list("a.")) == ["a.b.local"]
    assert keys(await store.trust_domains.list("a")) == sorted(
        ["a_b.local", "axb.local", "a.b.local", "a-b.local"]
    )


async def test_raw_keys_values_and_prefixes(store: Store) -> None:
    """Backend level: arbitrary bytes values, LIKE/glob metacharacters, key order."""
    b = store.backend
    names = ["a", "a/b", "a-b", "a.b", "aB", "a_b", "a%b", "a\\b", "a*b", "Z", "a b", "a\u00e9"]
    values = {f"/contract/{n}": bytes([i, 0, 255 - i]) + n.encode() for i, n in enumerate(names)}
    values["/contract/empty"] = b""
    values["/contract/binary"] = bytes(range(256))
    order = list(values)
    random.Random(7).shuffle(order)
    revs = {}
    for key in order:
        revs[key] = await b.commit([Put(key, values[key], ABSENT)])
    await b.commit([Put("/contractx", b"outside", ABSENT)])

    items, at = await b.list("/contract/")
    assert [kv.key for kv in items] == sorted(values), "list must be sorted by key"
    assert at >= max(revs.values())
    for kv in items:
        assert kv.value == values[kv.key], f"value of {kv.key!r} changed"
        assert kv.create_revision == kv.mod_revision == revs[kv.key]
        assert kv.lease == 0
        assert await b.get(kv.key) == kv

    def listed(prefix: str) -> Any:
        async def run() -> list[str]:
            return [kv.key for kv in (await b.list(prefix))[0]]

        return run()

    assert await listed("/contract/a_") == ["/contract/a_b"]
    assert await listed("/contract/a%") == ["/contract/a%b"]
    assert await listed("/contract/a\\") == ["/contract/a\\b"]
    assert await listed("/contract/a*") == ["/contract/a*b"]
    assert await listed("/contract/a/") == ["/contract/a/b"]
    assert await listed("/contract/a\u00e9") == ["/contract/a\u00e9"]
    assert await listed("/contract/Z") == ["/contract/Z"]
    assert await listed("/contract/zz") == []
    assert await listed("/contract") == [*sorted(values), "/contractx"]
    assert await b.get("/contract/missing") is None
    assert await b.get("/contract/a_") is None


# ============================================================================ commits


async def test_multi_key_commit_is_all_or_nothing(store: Store) -> None:
    b = store.backend
    x_rev = await b.commit([Put("/t/x", b"x", ABSENT)])
    y_rev = await b.commit([Put("/t/y", b"y", ABSENT)])
    await b.commit([Put("/t/z", b"z", ABSENT)])
    await b.commit([Put("/t/y", b"y2", y_rev)])  # y_rev is now stale
    lease = await b.lease_grant(30)
    await b.lease_revoke(lease)
    base = await b.revision()

    failing = [
        (Put("/t/c", b"c", 10**9), Conflict),  # expects a revision the key never had
        (Put("/t/z", b"again", ABSENT), AlreadyExists),
        (Delete("/t/missing"), NotFound),
        (Delete("/t/y", y_rev), Conflict),
        (Put("/t/d", b"d", ANY, lease), LeaseNotFound),
    ]
    for bad, error in failing:
        for ops in (
            [Put("/t/a", b"a", ABSENT), Put("/t/b", b"b"), Delete("/t/x", x_rev), bad],
            [bad, Put("/t/a", b"a", ABSENT), Put("/t/b", b"b"), Delete("/t/x", x_rev)],
        ):
            with pytest.raises(error):
                await b.commit(ops)
            assert await b.get("/t/a") is None, f"{bad} failed but /t/a was written"
            assert await b.get("/t/b") is None, f"{bad} failed but /t/b was written"
            x = await b.get("/t/x")
            assert x is not None and x.mod_revision == x_rev and x.value == b"x"
            assert await b.revision() == base, f"{bad} failed but the revision moved"

    assert await b.commit([]) == base, "an empty commit must be a no-op"
    assert await b.revision() == base

    rev = await b.commit(
        [Put("/t/a", b"a", ABSENT), Put("/t/b", b"b"), Delete("/t/x", x_rev), Delete("/t/y")]
    )
    assert rev > base
    a, bb = await b.get("/t/a"), await b.get("/t/b")
    assert a is not None and bb is not None
    assert a.mod_revision == bb.mod_revision == a.create_revision == rev, "one revision per commit"
    assert await b.get("/t/x") is None
    assert await b.get("/t/y") is None
    assert await b.revision() == rev
    # Delete with must_exist=False on a missing key does not fail the transaction
    rev2 = await b.commit([Delete("/t/never", must_exist=False), Put("/t/c", b"c", ABSENT)])
    assert rev2 > rev
    assert (await b.get("/t/c")) is not None


async def test_replace_endpoints_is_one_atomic_change(store: Store) -> None:
    initial = [endpoint(f"10.2.0.{i}") for i in range(1, 6)]
    r0 = await store.replace_endpoints("east", "shop", "cart", initial)
    other = await store.endpoints.create(endpoint("10.9.0.1", cluster_name="west"))
    listed = await store.endpoints.list("shop/cart/east/")
    assert {e.record for e in listed} == set(initial)
    assert all(e.revision == r0 for e in listed), "one transaction -> one revision"

    it = store.watch()
    snap = await next_msg(it)
    assert isinstance(snap, TypedSnapshot) and not snap.resync

    keep = initial[:2]
    changed = [endpoint(initial[2].address, v=7)]
    added = [endpoint(f"10.2.1.{i}") for i in range(1, 4)]
    removed = initial[3:]
    wanted = keep + changed + added
    rev = await store.replace_endpoints("east", "shop", "cart", wanted)
    assert rev > other.revision

    msg = only_changes(await changes_until(it, rev))
    assert revisions(msg) == [rev], "the replacement must arrive as one Changes"
    events = {(c.type, c.key): c.record for c in msg[0].changes}
    assert {k for k in events if k[0] == "delete"} == {("delete", e.key) for e in removed}
    assert {k for k in events if k[0] == "put"} == {("put", e.key) for e in changed + added}
    for (kind, key), record in events.items():
        if kind == "put":
            assert record in changed + added, key
    assert all(c.kind == "endpoints" for c in msg[0].changes)
    assert {e.record for e in await store.endpoints.list("shop/cart/east/")} == set(wanted)
    assert [e.record for e in await store.endpoints.list("shop/cart/west/")] == [other.record]

    # the same set again writes nothing; the feed stays silent until the next real write
    again = await store.replace_endpoints("east", "shop", "cart", wanted)
    assert again == await store.revision()
    marker = await store.clusters.create(cluster("marker"))
    assert revisions(await changes_until(it, marker.revision)) == [marker.revision]

    with pytest.raises(ValueError):
        await store.replace_endpoints("west", "shop", "cart", wanted)

    emptied = await store.replace_endpoints("east", "shop", "cart", [])
    msg = await changes_until(it, emptied)
    assert revisions(msg) == [emptied]
    assert {c.key for c in msg[0].changes} == {e.key for e in wanted}
    assert await store.endpoints.list("shop/cart/east/") == []


# ============================================================================= leases


async def test_lease_expiry_keepalive_and_dead_lease(store: Store) -> None:
    ttl = 1.0
    kept = await store.grant_lease(ttl)
    dying = await store.grant_lease(ttl)
    assert kept != dying and kept > 0 and dying > 0
    t0 = time.monotonic()
    v_kept = await store.clusters.create(cluster("kept"), lease=kept)
    v_dying = await store.clusters.create(cluster("dying"), lease=dying)
    assert (await store.clusters.get("kept")).lease == kept
    assert (await store.clusters.get("dying")).lease == dying
    await store.keepalive(kept)

    it = store.watch(since=max(v_kept.revision, v_dying.revision))
    stop = asyncio.Event()

    async def keep_alive() -> None:
        while not stop.is_set():
            await store.keepalive(kept)
            await asyncio.sleep(ttl / 5)

    pinger = asyncio.create_task(keep_alive())
    try:

        async def dying_gone() -> bool:
            return await store.clusters.find("dying") is None

        await eventually(dying_gone, ttl + 5, "record under an expired lease still present")
        assert time.monotonic() - t0 >= ttl * 0.5, "lease expired long before its TTL"
        msg = await next_msg(it)
        assert isinstance(msg, TypedChanges), "lease expiry must show in the change feed"
        assert [(c.type, c.key) for c in msg.changes] == [("delete", "dying")]

        # the kept lease outlives its TTL several times over while kept alive
        while time.monotonic() - t0 < 2.5 * ttl:
            await asyncio.sleep(0.1)
        assert await store.clusters.find("kept") is not None, "keepalive did not extend the lease"
    finally:
        stop.set()
        await pinger

    async def kept_gone() -> bool:
        return await store.clusters.find("kept") is None

    await eventually(kept_gone, ttl + 5, "lease no longer kept alive did not expire")
    msg = await next_msg(it)
    assert [(c.type, c.key) for c in msg.changes] == [("delete", "kept")]

    for dead in (kept, dying):
        with pytest.raises(LeaseNotFound):
            await store.keepalive(dead)
        with pytest.raises(LeaseNotFound):
            await store.clusters.create(cluster("late"), lease=dead)
    assert await store.clusters.find("late") is None


async def test_lease_revoke_deletes_now_in_one_revision(store: Store) -> None:
    lease = await store.grant_lease(60)
    eps = [endpoint(f"10.3.0.{i}") for i in range(1, 4)]
    await store.replace_endpoints("east", "shop", "cart", eps, lease=lease)
    await store.gateways.create(gateway(), lease=lease)
    plain = await store.clusters.create(cluster("plain"))
    # a put without the lease detaches the key from it
    detached = await store.clusters.create(cluster("detach"), lease=lease)
    await store.clusters.update(cluster("detach", 2), detached.revision)
    assert (await store.clusters.get("detach")).lease == 0

    it = store.watch()
    await next_msg(it)
    await store.revoke(lease)
    assert await store.endpoints.list() == [], "revoke must delete at once"
    assert await store.gateways.find("east") is None
    assert (await store.clusters.get("plain")).revision == plain.revision
    assert await store.clusters.find("detach") is not None

    msg = await next_msg(it)
    assert isinstance(msg, TypedChanges)
    assert {(c.type, c.kind, c.key) for c in msg.changes} == {
        ("delete", "endpoints", e.key) for e in eps
    } | {("delete", "gateways", "east")}, "revoke deletes every key in one revision"

    with pytest.raises(LeaseNotFound):
        await store.keepalive(lease)
    with pytest.raises(LeaseNotFound):
        await store.clusters.put(cluster("late"), lease=lease)
    with pytest.raises(LeaseNotFound):
        await store.replace_endpoints("east", "shop", "cart", eps, lease=lease)
    assert await store.endpoints.list() == []
    with pytest.raises(LeaseNotFound):
        await store.clusters.create(cluster("never"), lease=987654321)


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


async def test_random_commits_match_a_model(store: Store) -> None:
    """Seeded random transactions against a dict model: outcomes, values and the feed."""
    b = store.backend
    rng = random.Random(1234)
    model: dict[str, tuple[bytes, int, int]] = {}  # key -> (value, create_rev, mod_rev)
    keys = [f"/m/k{i}" for i in range(8)]
    it = b.watch("/m/")
    snap = await next_msg(it)
    assert isinstance(snap, Snapshot) and snap.items == ()
    expected_feed: list[tuple[int, list[tuple[str, str, bytes | None]]]] = []
    rev = await b.revision()
    for step in range(60):
        ops: list[Any] = []
        outcome: type[Exception] | None = None
        for key in rng.sample(keys, rng.randint(1, 4)):
            cur = model.get(key)
            roll = rng.random()
            if roll < 0.45:
                expect: int | None
                if cur is None:
                    expect = rng.choice([ABSENT, ANY, ABSENT, 10**8])
                    if expect == 10**8 and outcome is None:
                        outcome = Conflict
                else:
                    expect = rng.choice([ANY, cur[2], cur[2], ABSENT, max(1, cur[2] - 1)])
                    if expect == ABSENT and outcome is None:
                        outcome = AlreadyExists
                    elif expect not in (ANY, cur[2]) and outcome is None:
                        outcome = Conflict
                ops.append(Put(key, f"v{step}".encode(), expect))
            else:
                if cur is None:
                    ops.append(Delete(key, must_exist=rng.random() < 0.5))
                    if ops[-1].must_exist and outcome is None:
                        outcome = NotFound
                else:
                    expect = rng.choice([ANY, cur[2], max(1, cur[2] - 1)])
                    if expect not in (ANY, cur[2]) and outcome is None:
                        outcome = Conflict
                    ops.append(Delete(key, expect))
        if outcome is not None:
            with pytest.raises((Conflict, AlreadyExists, NotFound)) as err:
                await b.commit(ops)
            assert isinstance(err.value, outcome), f"step {step}: {ops}: {err.value!r}"
            assert await b.revision() == rev
            continue
        new_rev = await b.commit(ops)
        events: list[tuple[str, str, bytes | None]] = []
        for op in ops:
            if isinstance(op, Put):
                create = model[op.key][1] if op.key in model else new_rev
                model[op.key] = (op.value, create, new_rev)
                events.append(("put", op.key, op.value))
            elif op.key in model:
                del model[op.key]
                events.append(("delete", op.key, None))
        if events:
            assert new_rev > rev, f"step {step}: revision did not advance"
            expected_feed.append((new_rev, events))
        rev = await b.revision()
        items, _ = await b.list("/m/")
        assert {kv.key: (kv.value, kv.create_revision, kv.mod_revision) for kv in items} == model

    if expected_feed:
        msgs = await changes_until(it, expected_feed[-1][0])
        got = [(m.revision, sorted((e.type, e.key, e.value) for e in m.events)) for m in msgs]
        assert got == [(r, sorted(ev)) for r, ev in expected_feed]
        for m in msgs:
            assert all(e.mod_revision == m.revision for e in m.events)


async def test_renewing_all_leases_gives_each_a_full_ttl(store: Store) -> None:
    """A restarted registry renews the leases it now keeps: records outlive the outage
    by one TTL, and still expire if nobody keeps them alive after that."""
    backend = store.backend
    lease = await backend.lease_grant(2)
    await backend.commit([Put("/meshfed-renew/x", b"1", lease=lease)])
    await asyncio.sleep(1.3)
    assert await backend.lease_renew_all() >= 1
    await asyncio.sleep(1.3)  # 2.6 s after the grant: past the original deadline
    assert await backend.get("/meshfed-renew/x") is not None
    deadline = time.monotonic() + 6
    while await backend.get("/meshfed-renew/x") is not None:
        assert time.monotonic() < deadline, "the renewed lease never expired"
        await asyncio.sleep(0.1)
