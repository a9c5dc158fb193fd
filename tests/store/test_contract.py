"""The store contract, held against every backend (SQLite, PostgreSQL, etcd).

Each test gets a fresh, empty store through the `store` fixture (see conftest.py),
parametrized over the three backends. What is asserted is what the registry relies
on: typed CRUD with optimistic concurrency, all-or-nothing multi-key commits, leases,
and a change feed with no gap and no duplicate that resumes and resyncs correctly.
Every read from a watch is bounded by a timeout so a bug fails instead of hanging.

This file: CRUD and commits. Leases: test_contract_leases.py; the change feed:
test_contract_feed.py; records and watch helpers shared by all three: contract_support.py.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from federation.errors import AlreadyExists, Conflict, LeaseNotFound, NotFound
from federation.store import Store
from federation.store.backend import ABSENT, ANY, Delete, Put, Snapshot
from federation.store.typed import TypedSnapshot
from tests.store.contract_support import (
    KINDS,
    changes_until,
    cluster,
    endpoint,
    next_msg,
    only_changes,
    revisions,
    trust_domain,
)

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
