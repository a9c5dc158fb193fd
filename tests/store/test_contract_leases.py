"""The store contract, leases: expiry, keepalive, revoke and renewing all (every backend).

Split from test_contract.py (shared helpers: contract_support.py; backends: conftest.py).
"""

from __future__ import annotations

import asyncio
import time

import pytest

from federation.errors import LeaseNotFound
from federation.store import Store
from federation.store.backend import Put
from federation.store.typed import TypedChanges
from tests.store.contract_support import (
    cluster,
    endpoint,
    eventually,
    gateway,
    next_msg,
)

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
