"""A full state's transactions fit an etcd left at its default --max-txn-ops (128)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from federation.controlplane.reports import ReportPlan, ServiceWrite
from federation.controlplane.service import EndpointSession
from federation.controlplane.settings import Settings
from federation.errors import StoreError
from federation.model import Endpoint, Port, ServiceExport
from federation.store import Store, open_store
from federation.store.backend import Op, Put
from tests.servers.etcd import EtcdServer

T0 = datetime(2026, 1, 1, tzinfo=UTC)
PORTS = (Port(8080),)


def write(i: int, endpoints: int = 2) -> ServiceWrite:
    name = f"svc-{i:03}"
    return ServiceWrite(
        ServiceExport("east", "demo", name, T0, PORTS),
        tuple(
            Endpoint("east", "demo", name, f"10.{e}.{i // 200}.{i % 200 + 1}", PORTS, "z")
            for e in range(endpoints)
        ),
    )


@pytest.fixture(scope="module")
def stock_etcd() -> Iterator[EtcdServer]:
    # tests/servers/etcd.py raises the limit to 10000 like meshfed's installer;
    # the later flag puts etcd's default back.
    with EtcdServer(["--max-txn-ops", "128"]) as server:
        yield server


@pytest.fixture
async def store(stock_etcd: EtcdServer, request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    s = await open_store(stock_etcd.url_for(request.node.name))
    try:
        yield s
    finally:
        await s.close()


async def test_the_server_refuses_129_operations(store: Store) -> None:
    with pytest.raises(StoreError):
        await store.commit([Put(f"/meshfed/probe/{i}", b"x") for i in range(129)])
    await store.commit([Put(f"/meshfed/probe/{i}", b"x") for i in range(128)])


async def test_a_full_state_is_written_in_a_few_transactions_etcd_accepts(store: Store) -> None:
    session = EndpointSession(store, "east", Settings(lease_ttl=60))
    session.lease = await store.grant_lease(60)
    before = await store.revision()
    await session.apply(ReportPlan(True, tuple(write(i) for i in range(300)), ()))
    # etcd gives each transaction one revision: 300 services of 3 ops in 8.
    assert await store.revision() - before == 8
    assert session.revision == await store.revision()
    eps = await store.endpoints.list()
    assert len(eps) == 600 and {v.lease for v in eps} == {session.lease}

    # The next stream's full state: 100 services gone, 50 with 6 endpoints, 150 unchanged.
    again = EndpointSession(store, "east", Settings(lease_ttl=60))
    again.lease = await store.grant_lease(60)
    writes = tuple(write(i, 6 if i < 50 else 2) for i in range(200))
    before = await store.revision()
    await again.apply(ReportPlan(True, writes, ()))
    assert await store.revision() - before < 20
    assert len(await store.exports.list()) == 200
    eps = await store.endpoints.list()
    assert len(eps) == 50 * 6 + 150 * 2 and {v.lease for v in eps} == {again.lease}
    assert again.held == {w.service for w in writes}


async def test_a_transaction_that_meets_another_writer_is_reread_and_replanned(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    stale = Endpoint("east", "demo", "svc-000", "10.9.0.1", PORTS, "z")
    await store.replace_endpoints("east", "demo", "svc-000", [stale])
    session = EndpointSession(store, "east", Settings(lease_ttl=60))
    session.lease = await store.grant_lease(60)
    commit = store.commit
    calls = 0

    async def racing_commit(ops: Sequence[Op]) -> int:
        nonlocal calls
        calls += 1
        if calls == 1:  # another writer changes the stale endpoint after it was read
            await store.replace_endpoints("east", "demo", "svc-000", [replace(stale, weight=2)])
        return await commit(ops)

    monkeypatch.setattr(store, "commit", racing_commit)
    writes = tuple(write(i) for i in range(100))
    await session.apply(ReportPlan(True, writes, ()))
    assert calls == 4  # 3 transactions, the first one twice
    eps = await store.endpoints.list()
    assert "10.9.0.1" not in {v.record.address for v in eps}
    assert len(eps) == 200 and {v.lease for v in eps} == {session.lease}
