"""ReportEndpoints, Watch and ReportHealth end to end, over real mTLS with a real store."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from federation.client import (
    ControlPlaneClient,
    Delta,
    ExportedService,
    Heartbeat,
    PeerProbe,
    Snapshot,
    WatchEvent,
    WatchView,
)
from federation.errors import PermissionDenied
from federation.model import Endpoint, Port, ServiceExport, ServiceKey
from tests.controlplane.conftest import LEASE_TTL, Federation

CREATED = datetime(2026, 1, 1, tzinfo=UTC)
ECHO = ServiceKey("demo", "echo")


def service(
    cluster: str, name: str = "echo", addresses: tuple[str, ...] = ("10.0.0.1",), scope=()
) -> ExportedService:
    ports = (Port(8080, name="http"),)
    return ExportedService(
        ServiceExport(cluster, "demo", name, CREATED, ports, tuple(scope)),
        tuple(Endpoint(cluster, "demo", name, a, ports, "zone-a") for a in addresses),
    )


async def eventually(predicate, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while not await predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


class Watcher:
    """Reads one Watch stream in the background, keeping every event and the view."""

    def __init__(self, client: ControlPlaneClient, since: int = 0) -> None:
        self.events: list[WatchEvent] = []
        self.view = WatchView(revision=since)
        self._stream: AsyncIterator[WatchEvent] = client.watch(since=since)
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        async for event in self._stream:
            self.events.append(event)
            self.view = self.view.apply(event)

    async def until(self, predicate, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
        async def check() -> bool:
            if self._task.done():
                self._task.result()
            return bool(predicate(self.view))

        await eventually(check, timeout)

    async def stop(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


def addresses(view: WatchView, key: ServiceKey = ECHO) -> set[str]:
    imp = view.items.imports.get(key)
    return {e.address for e in imp.endpoints} if imp else set()


async def test_agent_of_a_may_not_write_b(fed: Federation) -> None:
    agent = await fed.join_client("east", "agent")
    with pytest.raises(PermissionDenied, match="west"):
        async with agent.report_endpoints() as report:
            await report.full_state([service("west")])
    assert await fed.store.exports.list() == []


async def test_endpoints_expire_after_the_stream_ends(fed: Federation) -> None:
    agent = await fed.join_client("east", "agent")
    async with agent.report_endpoints() as report:
        await report.full_state([service("east", addresses=("10.0.0.1", "10.0.0.2"))])
        await asyncio.sleep(LEASE_TTL * 1.5)  # alive longer than a TTL: kept alive
        assert len(await fed.store.endpoints.list()) == 2
    assert len(await fed.store.endpoints.list()) == 2  # not revoked at once

    async def gone() -> bool:
        return not await fed.store.endpoints.list() and not await fed.store.exports.list()

    await eventually(gone, timeout=LEASE_TTL * 3)


async def test_full_state_then_deltas(fed: Federation) -> None:
    agent = await fed.join_client("east", "agent")
    async with agent.report_endpoints() as report:
        await report.full_state([service("east"), service("east", "other")])
        await report.delta(upserted=[service("east", addresses=("10.0.0.9",))])
        await report.delta(removed=[ServiceKey("demo", "other")])
    exports = [v.record.key for v in await fed.store.exports.list()]
    assert exports == ["demo/echo/east"]
    assert [v.record.address for v in await fed.store.endpoints.list()] == ["10.0.0.9"]
    # A new stream's full state replaces what the old one held.
    async with agent.report_endpoints() as report:
        await report.full_state([service("east", "third")])
    assert [v.record.key for v in await fed.store.exports.list()] == ["demo/third/east"]


async def test_watch_snapshot_then_deltas_with_scope(fed: Federation) -> None:
    await fed.link("east", "west")
    await fed.link("east", "north")
    await fed.gateway("west")
    west = await fed.join_client("west", "agent")
    north = await fed.join_client("north", "gateway")
    east = await fed.join_client("east", "gateway")
    east_agent = await fed.join_client("east", "agent")
    async with west.report_endpoints() as report:
        await report.full_state([service("west")])

    watcher = Watcher(east)
    await watcher.until(lambda v: addresses(v) == {"10.0.0.1"})
    first = watcher.events[0]
    assert isinstance(first, Snapshot)
    assert set(first.items.links) == {"east/west", "east/north"}
    assert set(first.items.gateways) == {"west"}
    assert {"east.meshfed.test", "west.meshfed.test"} <= set(first.items.bundles)

    # Delta: north exports "echo" only to west (scope): east must not see it.
    north_agent = await fed.join_client("north", "agent")
    async with north_agent.report_endpoints() as report:
        await report.full_state([service("north", addresses=("10.1.0.1",), scope=("west",))])
        async with west.report_endpoints() as report2:
            await report2.full_state([service("west", addresses=("10.0.0.1", "10.0.0.2"))])
            await watcher.until(lambda v: addresses(v) == {"10.0.0.1", "10.0.0.2"})
            assert any(isinstance(e, Delta) for e in watcher.events)
            assert "north" not in watcher.view.items.imports[ECHO].clusters
    await watcher.until(lambda v: any(isinstance(e, Heartbeat) for e in watcher.events))
    await watcher.stop()
    del north, east_agent


async def test_reconnecting_watcher_misses_nothing(fed: Federation) -> None:
    await fed.link("east", "west")
    east = await fed.join_client("east", "gateway")
    west = await fed.join_client("west", "agent")
    async with west.report_endpoints() as report:
        await report.full_state([service("west"), service("west", "gone-later")])
        watcher = Watcher(east)
        await watcher.until(lambda v: addresses(v) == {"10.0.0.1"})
        held = watcher.view
        await watcher.stop()

        # While disconnected: an endpoint changes, a service goes, a new one comes.
        await report.delta(
            upserted=[service("west", addresses=("10.0.0.7",)), service("west", "new")],
            removed=[ServiceKey("demo", "gone-later")],
        )
        await asyncio.sleep(0.1)

        resumed = Watcher(east, since=held.revision)
        resumed.view = held
        await resumed.until(lambda v: addresses(v) == {"10.0.0.7"})
        assert not isinstance(resumed.events[0], Snapshot)  # a catch-up delta, not a snapshot
        assert set(resumed.view.items.imports) == {ECHO, ServiceKey("demo", "new")}

        fresh = Watcher(east)
        await fresh.until(lambda v: v.items.imports)
        assert fresh.view.items == resumed.view.items
        await resumed.stop()
        await fresh.stop()


async def test_follow_sees_a_new_link_with_its_imports(fed: Federation) -> None:
    east = await fed.join_client("east", "agent")
    west = await fed.join_client("west", "agent")
    async with west.report_endpoints() as report:
        await report.full_state([service("west")])

        async def exported() -> bool:
            return bool(await fed.store.endpoints.list())

        await eventually(exported)
        views = east.follow()
        view = await anext(views)
        assert not view.items.imports  # not linked yet
        await fed.link("east", "west")
        view = await asyncio.wait_for(anext(views), 5)
        assert addresses(view) == {"10.0.0.1"} and set(view.items.links) == {"east/west"}
        await views.aclose()


async def test_report_health_drives_link_conditions(fed: Federation) -> None:
    await fed.link("east", "west")
    await fed.gateway("west")
    east = await fed.join_client("east", "gateway")
    west = await fed.join_client("west", "gateway")

    assert await east.report_health([PeerProbe("west", True), PeerProbe("north", False)]) == [
        "north"
    ]
    link = (await fed.store.links.get("east/west")).record
    reach, ready = link.condition("GatewayReachable"), link.condition("Ready")
    assert reach is not None and reach.status == "True"
    assert ready is not None and ready.status == "True"
    west_gw = (await fed.store.gateways.get("west")).record
    assert west_gw.healthy is True
    # Health is written over the record: locality and trust domain stay.
    assert (west_gw.region, west_gw.zone, west_gw.trust_domain) == (
        "us-west",
        "us-west-2a",
        "west.meshfed.test",
    )

    await west.report_health([PeerProbe("east", False, "ConnectTimeout", "no answer in 1s")])
    link = (await fed.store.links.get("east/west")).record
    down = link.condition("GatewayReachable")
    assert down is not None and down.status == "False" and down.reason == "ConnectTimeout"
    assert down.last_transition_time >= reach.last_transition_time
    # The same report again: status unchanged, transition time unchanged.
    await west.report_health([PeerProbe("east", False, "ConnectTimeout", "still nothing")])
    again = (await fed.store.links.get("east/west")).record.condition("GatewayReachable")
    assert again is not None and again.last_transition_time == down.last_transition_time
    # east reporting west up again does not hide the west->east failure.
    await east.report_health([PeerProbe("west", True)])
    still = (await fed.store.links.get("east/west")).record.condition("GatewayReachable")
    assert still is not None and still.status == "False"
    await west.report_health([PeerProbe("east", True)])
    healed = (await fed.store.links.get("east/west")).record
    assert healed.condition("GatewayReachable").status == "True"  # type: ignore[union-attr]
    assert healed.condition("Ready").status == "True"  # type: ignore[union-attr]


async def test_invalid_probe_reason_names_the_field(fed: Federation) -> None:
    from federation.errors import ValidationError

    await fed.link("east", "west")
    east = await fed.join_client("east", "gateway")
    with pytest.raises(ValidationError) as err:
        await east.report_health([PeerProbe("west", False, "not camel case!")])
    assert err.value.field == "probes[0].reason"
