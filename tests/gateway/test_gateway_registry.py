"""Registry mode end to end: a real registry (SQLite in tmp_path, the real TrustService,
the registry service, the gRPC control plane with mTLS) and registry-mode gateways on
loopback.

Nothing is written by hand that the registry derives: clusters are created through the
registry service with their gateway addresses (so the registry writes their Gateway
records, with locality and trust domain), west's agent exports demo/echo with
ReportEndpoints, and west's gateway derives its ingress route (terminate, allow list
from the link) from the Watch's own exports. east's gateway follows its Watch, opens an
egress listener for the imported port and originates mTLS with its own SVID to west's
gateway, expecting west's gateway SPIFFE ID. A gateway identity of an unlinked cluster
is refused by west's ingress.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from gateway_pki import PKI, EchoServer, start_echo
from registry_support import (
    EAST_GW_ID,
    NORTH,
    NORTH_GW_ID,
    SETTINGS,
    WEST,
    WEST_GW_ID,
    Registry,
    client_context,
    closed,
    eventually,
    federation,
    free_port,
    listening,
    open_egress,
    roundtrip,
    tls_exchange,
    west_ingress_ready,
    west_of,
)

from eastwest_gateway.gateway import Gateway as StaticGateway
from eastwest_gateway.routefile import HostPort, Locality, Mode
from federation.model import Endpoint, Port


async def test_join_watch_egress_carries_traffic_and_health_reaches_link(
    registry: Registry, echo: EchoServer
) -> None:
    east, port = await federation(registry, echo)
    await eventually(lambda: listening(east, port))
    conn = await open_egress(port)
    assert await roundtrip(conn, b"hello west") == b"hello west"
    conn[1].close()
    # The echo server saw a plaintext connection from west's gateway, which
    # verified east's SVID (terminate + allow list) before connecting it.
    assert echo.connections == 1
    assert east.identity is not None and east.identity.spiffe_id == EAST_GW_ID
    route = east.desired.route_file.egress[0] if east.desired else None
    assert route is not None and route.sni == f"{port}.echo.demo.svc.clusterset.local"
    (west_cluster,) = route.clusters
    assert west_cluster.name == "west"
    # From west's Gateway record, written by the registry from the cluster.
    assert west_cluster.spiffe_id == WEST_GW_ID
    assert west_cluster.locality == Locality(WEST.region, WEST.zone)
    assert west_cluster.gateways == (HostPort("127.0.0.1", registry.gateway_ports["west"]),)
    # west's ingress route came from its Watch: own export + east's link.
    west = west_of(registry)
    assert west.gateway is not None
    (ingress,) = west.gateway.route_file.routes
    assert ingress.mode is Mode.TERMINATE and ingress.allow == (EAST_GW_ID,)
    assert ingress.backends == (HostPort("127.0.0.1", echo.port),)

    async def reachable() -> bool:
        link = (await registry.store.links.get("east/west")).record
        cond = link.condition("GatewayReachable")
        if cond is None or cond.status != "True" or "east->west: up" not in cond.message:
            return False
        # The registry writes the peer gateway's health right after the link.
        return (await registry.store.gateways.get("west")).record.healthy is True

    await eventually(reachable)


async def test_west_ingress_refuses_an_unlinked_clusters_gateway(
    registry: Registry, echo: EchoServer
) -> None:
    east, port = await federation(registry, echo)
    west_port = registry.gateway_ports["west"]
    sni = f"{port}.echo.demo.svc.clusterset.local"
    # north is a member of the federation (its SVID chains to the same root) but has
    # no link with west: west's allow list does not name it.
    north = await registry.identity(NORTH, "gateway")
    assert north.spiffe_id == NORTH_GW_ID
    refused = await tls_exchange(
        west_port, sni, client_context(north, registry.tmp / "north"), b"let me in"
    )
    assert refused == b"" and echo.connections == 0
    # The same call with east's gateway SVID goes through: it is the allow list.
    assert east.identity is not None
    ctx = client_context(east.identity, registry.tmp / "east-direct")
    assert await tls_exchange(west_port, sni, ctx, b"east is linked") == b"east is linked"
    assert echo.connections == 1
    # Linking north (north imports west) adds it to west's allow list.
    await registry.link("north", "west", bidirectional=False)
    west = west_of(registry)

    def north_allowed() -> bool:
        assert west.gateway is not None
        return any(NORTH_GW_ID in r.allow for r in west.gateway.route_file.routes)

    await eventually(north_allowed)
    ctx = client_context(north, registry.tmp / "north")
    assert await tls_exchange(west_port, sni, ctx, b"now linked") == b"now linked"


async def test_route_changes_keep_live_connections(registry: Registry, echo: EchoServer) -> None:
    east, port = await federation(registry, echo)
    await eventually(lambda: listening(east, port))
    live = await open_egress(port)
    assert await roundtrip(live, b"one") == b"one"
    applied = east.views_applied

    # A new endpoint changes the echo listener's candidates; a new export adds a listener.
    other = free_port()
    # (127.0.0.2 refuses: west's ingress takes its backends in turn and falls over.)
    await registry.store.endpoints.put(
        Endpoint("west", "demo", "echo", "127.0.0.2", (Port(echo.port, name="tcp"),), WEST.zone)
    )
    await registry.export("other", other, "127.0.0.1")
    await eventually(lambda: listening(east, other))
    await eventually(lambda: west_ingress_ready(west_of(registry), other, "other"))
    assert east.views_applied > applied
    assert east.desired is not None
    echo_route = next(r for r in east.desired.route_file.egress if r.listen.port == port)
    assert echo_route.clusters[0].ready_endpoints == 2
    assert await roundtrip(live, b"two") == b"two"
    second = await open_egress(other)
    assert await roundtrip(second, b"other") == b"other"

    # Unexporting closes the listener; the connection already through it stays up.
    await registry.store.exports.delete("demo/other/west")
    await eventually(lambda: closed(east, other))
    assert await roundtrip(second, b"still here") == b"still here"
    assert await roundtrip(live, b"three") == b"three"
    for _, writer in (live, second):
        writer.close()


async def test_restart_from_snapshot_without_registry_then_catch_up(
    registry: Registry, echo: EchoServer
) -> None:
    east, port = await federation(registry, echo)
    await eventually(lambda: listening(east, port))
    options = east.options
    await east.stop()
    registry.gateways.remove(east)
    await registry.stop()

    # The registry is gone: a new east gateway starts from the saved SVID and view.
    restarted = await registry.gateway(options)
    assert listening(restarted, port)
    conn = await open_egress(port)
    assert await roundtrip(conn, b"from the snapshot") == b"from the snapshot"
    conn[1].close()
    revision = restarted.view.revision
    assert revision > 0

    # The registry returns; a change made meanwhile reaches the gateway from its revision.
    newer = free_port()
    await registry.export("other", newer, "127.0.0.1")
    await registry.start()
    await eventually(lambda: listening(restarted, newer), timeout=20)
    await eventually(lambda: west_ingress_ready(west_of(registry), newer, "other"))
    assert restarted.view.revision > revision
    conn = await open_egress(newer)
    assert await roundtrip(conn, b"caught up") == b"caught up"
    conn[1].close()


async def test_svid_renewed_at_half_life_without_dropping_connections(
    registry: Registry, echo: EchoServer
) -> None:
    east, port = await federation(registry, echo)
    await eventually(lambda: listening(east, port))
    live = await open_egress(port)
    assert await roundtrip(live, b"before") == b"before"
    assert east.identity is not None
    first = east.identity
    lifetime = first.not_after - first.not_before
    # Move east's clock past the (jittered) half lifetime until it has renewed once.
    east.clock = lambda: datetime.now(UTC) + (lifetime * 0.6 if east.renewals == 0 else timedelta())
    east.recheck_renewal()
    await eventually(lambda: east.renewals == 1)
    renewed = east.identity
    assert renewed is not None and renewed.spiffe_id == first.spiffe_id
    assert renewed.certificate.serial_number != first.certificate.serial_number
    assert (east.state_dir / "svid.pem").read_bytes() == renewed.chain_pem
    assert await roundtrip(live, b"after") == b"after"  # the old session is untouched
    fresh = await open_egress(port)
    assert await roundtrip(fresh, b"new svid") == b"new svid"
    for _, writer in (live, fresh):
        writer.close()


@pytest.mark.parametrize(
    ("expected", "works"),
    [
        ("spiffe://west.meshfed/meshfed/gateway/west", True),
        ("spiffe://west.meshfed/meshfed/gateway/other", False),
        ("", True),  # no expectation: the chain alone
    ],
)
async def test_egress_originate_checks_the_upstream_gateway_id(
    tmp_path: Path, pki: PKI, expected: str, works: bool
) -> None:
    """Origination expects the peer gateway's SPIFFE ID (registry mode: from its trust
    domain); another identity, even one the federation root signed, is refused."""
    remote = await start_echo(pki.west_gw.server_context())
    tls = {"cert": str(pki.east_gw.cert), "key": str(pki.east_gw.key), "ca": str(pki.ca)}
    cluster: dict[str, object] = {
        "name": "west",
        "region": "r",
        "zone": "z",
        "gateways": [f"127.0.0.1:{remote.port}"],
    }
    if expected:
        cluster["spiffe_id"] = expected
    doc = {
        "tls": tls,
        "locality": {"region": "r", "zone": "z"},
        "routes": [],
        "egress": [
            {
                "listen": "127.0.0.1:0",
                "sni": "echo.demo.svc.clusterset.local",
                "mode": "originate",
                "clusters": [cluster],
            }
        ],
    }
    path = tmp_path / "routes.yaml"
    path.write_text(yaml.safe_dump(doc))
    gw = StaticGateway("east", path, replace(SETTINGS, probe_interval=60.0))
    await gw.start(HostPort("127.0.0.1", 0), None)
    try:
        addr = gw.egress.address(HostPort("127.0.0.1", 0))
        reader, writer = await asyncio.open_connection(addr.host, addr.port)
        writer.write(b"ping")
        await writer.drain()
        got = b""
        with contextlib.suppress(ConnectionError):  # refused: closed or reset
            got = await asyncio.wait_for(reader.read(4), 5)
        writer.close()
        failures = gw.metrics.handshake_failures.labels("egress", "upstream_identity")
        if works:
            assert got == b"ping"
            assert failures._value.get() == 0
        else:
            assert got == b""
            assert failures._value.get() == 1
    finally:
        await gw.shutdown()
        remote.kill()
