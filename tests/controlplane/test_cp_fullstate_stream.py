"""A large full state over ReportEndpoints: few transactions, whole services, one lease."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from datetime import UTC, datetime

from federation.client import ExportedService, WatchView
from federation.model import Endpoint, Port, ServiceExport, ServiceKey
from federation.store.typed import TypedChanges
from tests.controlplane.conftest import Federation

CREATED = datetime(2026, 1, 1, tzinfo=UTC)
PORTS = (Port(8080, name="http"),)
SERVICES = 300


def service(name: str, addresses: tuple[str, ...]) -> ExportedService:
    return ExportedService(
        ServiceExport("east", "demo", name, CREATED, PORTS),
        tuple(Endpoint("east", "demo", name, a, PORTS, "zone-a") for a in addresses),
    )


def new_addresses(i: int) -> tuple[str, ...]:
    return (f"10.1.{i // 200}.{i % 200 + 1}", f"10.2.{i // 200}.{i % 200 + 1}")


async def eventually(check, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def test_a_300_service_full_state_lands_in_few_whole_service_transactions(
    fed: Federation,
) -> None:
    await fed.link("east", "west")
    agent = await fed.join_client("east", "agent")
    gateway = await fed.join_client("west", "gateway")
    names = [f"svc-{i:03}" for i in range(SERVICES)]
    # What the store holds before: 20 of the 300 with other endpoints, and 10
    # services the new full state no longer lists.
    old = {n: (f"10.9.0.{i + 1}",) for i, n in enumerate(names[:20])}
    old |= {f"gone-{i}": (f"10.8.0.{i + 1}",) for i in range(10)}
    new = {n: new_addresses(i) for i, n in enumerate(names)}

    async with agent.report_endpoints() as first:
        await first.full_state(service(n, a) for n, a in old.items())

        # A watcher of west, checking every view it goes through: each service of
        # east is absent, as it was, or as reported; never half of either.
        views: list[WatchView] = []
        bad: list[str] = []

        async def watch() -> None:
            view = WatchView()
            async for event in gateway.watch():
                view = view.apply(event)
                views.append(view)
                for key, imp in view.items.imports.items():
                    seen = tuple(sorted(e.address for e in imp.endpoints))
                    allowed = {tuple(sorted(old.get(key.name, ()))), new.get(key.name)}
                    if seen not in allowed:
                        bad.append(f"{key}: {seen} at revision {view.revision}")

        watcher = asyncio.create_task(watch())
        await eventually(lambda: bool(views) and len(views[-1].items.imports) == len(old))
        before = [*await fed.store.exports.list(), *await fed.store.endpoints.list()]
        old_lease = {v.lease for v in before}
        assert len(before) == 2 * len(old) and len(old_lease) == 1 and 0 not in old_lease

        feed: list[TypedChanges] = []
        touched: dict[str, set[int]] = defaultdict(set)  # service name -> revisions

        async def record(since: int) -> None:
            async for message in fed.store.watch(since=since):
                if isinstance(message, TypedChanges):
                    ours = [c for c in message.changes if c.kind in ("exports", "endpoints")]
                    if ours:
                        feed.append(message)
                    for change in ours:
                        touched[change.key.split("/")[1]].add(message.revision)

        recorder = asyncio.create_task(record(await fed.store.revision()))
        second = agent.report_endpoints()
        await second.full_state(service(n, a) for n, a in new.items())

        def final(view: WatchView) -> bool:
            imports = view.items.imports
            return set(imports) == {ServiceKey("demo", n) for n in names} and all(
                tuple(sorted(e.address for e in imp.endpoints)) == new[k.name]
                for k, imp in imports.items()
            )

        await eventually(lambda: bool(views) and final(views[-1]))
        expected = set(names) | {f"gone-{i}" for i in range(10)}
        await eventually(lambda: set(touched) == expected)
        # The full state replaced the old one (gone-* removed), all on the new lease.
        after = [*await fed.store.exports.list(), *await fed.store.endpoints.list()]
        assert len(after) == 3 * SERVICES
        leases = {v.lease for v in after}
        assert len(leases) == 1 and leases.isdisjoint(old_lease | {0})
        revision = await second.close()
        for task in (watcher, recorder):
            task.cancel()
        await asyncio.gather(watcher, recorder, return_exceptions=True)

    assert bad == []
    # Few transactions: 290 upserts and 10 removals in far fewer than 300 revisions
    # (at most 128 ops each: 3 per service, so 8 for 300 services).
    assert 1 <= len(feed) <= 10, [m.revision for m in feed]
    # Whole services: every service's export and endpoints changed at one revision.
    assert all(len(r) == 1 for r in touched.values()), touched
    # The revision returned covers the whole full state.
    assert revision >= max(m.revision for m in feed)
