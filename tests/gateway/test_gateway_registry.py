"""Registry mode end to end: a real registry (SQLite in tmp_path, the real TrustService,
the gRPC control plane with mTLS) and two registry-mode gateways on loopback.

east imports demo/echo from west. west's gateway terminates mTLS (its SVID from the
registry) and routes to a local echo server from its --local-routes file; east's
gateway follows the Watch, opens an egress listener for the imported port and
originates mTLS with its own SVID to west's gateway.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from gateway_pki import EchoServer

from eastwest_gateway.registry_mode import RegistryGateway, RegistryOptions
from eastwest_gateway.routefile import HostPort, Locality
from eastwest_gateway.settings import GatewaySettings
from federation.controlplane.server import ControlPlane, start
from federation.controlplane.settings import Settings
from federation.model import Cluster, Endpoint, Gateway, Link, Port, ServiceExport
from federation.registry.trust import TrustService
from federation.store import Store, open_store
from trust_bundle import PassphraseProtector

EAST = Cluster("east", "us-east", "us-east-1a", "east.meshfed.test")
WEST = Cluster("west", "us-west", "us-west-2a", "west.meshfed.test")
SETTINGS = GatewaySettings(probe_interval=0.2, connect_timeout=1.0, drain_deadline=1.0)
EAST_GW_ID = "spiffe://east.meshfed.test/meshfed/gateway/east"
ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def eventually(check: Callable[[], Awaitable[bool] | bool], timeout: float = 15.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = check()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


@dataclass
class Registry:
    tmp: Path
    store: Store
    trust: TrustService
    grpc_port: int
    join_port: int
    plane: ControlPlane | None = None
    gateways: list[RegistryGateway] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    async def start(self) -> None:
        settings = Settings(
            lease_ttl=1.0,
            heartbeat=0.3,
            catchup_timeout=1.0,
            join_listen=f"127.0.0.1:{self.join_port}",
        )
        self.plane = await start(self.store, self.trust, self.address, settings=settings)

    async def stop(self) -> None:
        if self.plane is not None:
            await self.plane.stop(0)
            self.plane = None

    async def options(self, cluster: Cluster, local: dict[str, object] | None) -> RegistryOptions:
        ca = self.tmp / "roots.pem"
        ca.write_bytes(await self.trust.bundle_pem())
        local_path = None
        if local is not None:
            import yaml

            local_path = self.tmp / f"{cluster.name}-local.yaml"
            local_path.write_text(yaml.safe_dump(local))
        token = await self.trust.create_join_token(
            cluster.name, timedelta(hours=1), datetime.now(UTC)
        )
        return RegistryOptions(
            cluster=cluster.name,
            registry=self.address,
            join_token=token,
            trust_domain=cluster.trust_domain,
            registry_ca=ca.read_bytes(),
            join_address=f"127.0.0.1:{self.join_port}",
            state_dir=self.tmp / f"{cluster.name}-state",
            local_routes=local_path,
            locality=Locality(cluster.region, cluster.zone),
            settings=SETTINGS,
            report_interval=0.2,
        )

    async def gateway(self, options: RegistryOptions) -> RegistryGateway:
        gw = RegistryGateway(options)
        await gw.start(HostPort("127.0.0.1", 0), None)
        self.gateways.append(gw)
        return gw

    async def export(self, name: str, port: int, *addresses: str) -> None:
        await self.store.exports.put(
            ServiceExport("west", "demo", name, datetime.now(UTC), (Port(port),))
        )
        for address in addresses:
            await self.store.endpoints.put(
                Endpoint("west", "demo", name, address, (Port(port),), WEST.zone)
            )


@pytest.fixture
async def registry(tmp_path: Path) -> AsyncIterator[Registry]:
    store = await open_store(f"sqlite:///{tmp_path / 'registry.db'}")
    trust = TrustService(store, PassphraseProtector(b"gateway-registry-tests"))
    now = datetime.now(UTC)
    await trust.ensure_root(now)
    for cluster in (EAST, WEST):
        await store.clusters.create(cluster)
        await trust.issue_cluster_ca(cluster, now)
    reg = Registry(tmp_path, store, trust, free_port(), free_port())
    await reg.start()
    try:
        yield reg
    finally:
        for gw in reg.gateways:
            await gw.stop()
        await reg.stop()
        await store.close()


def west_local(echo: EchoServer, *services: str) -> dict[str, object]:
    return {
        "locality": {"region": WEST.region, "zone": WEST.zone},
        "routes": [
            {
                "sni": f"{svc}.demo.svc.clusterset.local",
                "backend": f"127.0.0.1:{echo.port}",
                "mode": "terminate",
                "allow": [EAST_GW_ID],
            }
            for svc in services
        ],
    }


async def federation(registry: Registry, echo: EchoServer) -> tuple[RegistryGateway, int]:
    """west's gateway up and recorded, west exports demo/echo; returns (east gw, port)."""
    west = await registry.gateway(await registry.options(WEST, west_local(echo, "echo", "other")))
    assert west.gateway is not None
    await registry.store.gateways.put(Gateway("west", (str(west.gateway.ingress.address),)))
    await registry.store.links.create(Link("east", "west"))
    port = free_port()
    await registry.export("echo", port, "10.1.0.5")
    east = await registry.gateway(await registry.options(EAST, None))
    assert east.gateway is not None
    await registry.store.gateways.put(Gateway("east", (str(east.gateway.ingress.address),)))
    return east, port


def listening(gw: RegistryGateway, port: int) -> bool:
    """The egress listener for `port` is open and has a cluster with ready endpoints
    (an export and its endpoints are separate writes, so separate views)."""
    assert gw.gateway is not None
    try:
        gw.gateway.egress.address(HostPort("127.0.0.1", port))
    except KeyError:
        return False
    routes = [r for r in gw.gateway.route_file.egress if r.listen.port == port]
    return any(c.ready_endpoints > 0 for r in routes for c in r.clusters)


def closed(gw: RegistryGateway, port: int) -> bool:
    assert gw.gateway is not None
    try:
        gw.gateway.egress.address(HostPort("127.0.0.1", port))
    except KeyError:
        return True
    return False


async def open_egress(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port)


async def roundtrip(
    conn: tuple[asyncio.StreamReader, asyncio.StreamWriter], payload: bytes
) -> bytes:
    reader, writer = conn
    writer.write(payload)
    await writer.drain()
    return await asyncio.wait_for(reader.readexactly(len(payload)), 5)


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
    assert [c.name for c in route.clusters] == ["west"]

    async def reachable() -> bool:
        link = (await registry.store.links.get("east/west")).record
        cond = link.condition("GatewayReachable")
        if cond is None or cond.status != "True" or "east->west: up" not in cond.message:
            return False
        # The registry writes the peer gateway's health right after the link.
        return (await registry.store.gateways.get("west")).record.healthy is True

    await eventually(reachable)


async def test_route_changes_keep_live_connections(registry: Registry, echo: EchoServer) -> None:
    east, port = await federation(registry, echo)
    await eventually(lambda: listening(east, port))
    live = await open_egress(port)
    assert await roundtrip(live, b"one") == b"one"
    applied = east.views_applied

    # A new endpoint changes the echo listener's candidates; a new export adds a listener.
    other = free_port()
    await registry.store.endpoints.put(
        Endpoint("west", "demo", "echo", "10.1.0.6", (Port(port),), WEST.zone)
    )
    await registry.export("other", other, "10.1.0.7")
    await eventually(lambda: listening(east, other))
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
    await registry.export("other", newer, "10.1.0.9")
    await registry.start()
    await eventually(lambda: listening(restarted, newer), timeout=20)
    assert restarted.view.revision > revision
    conn = await open_egress(newer)
    assert await roundtrip(conn, b"caught up") == b"caught up"
    conn[1].close()


async def http_get(port: int, path: str) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    body = await reader.read()
    writer.close()
    return body


async def test_meshfed_gateway_registry_cli_process(registry: Registry, echo: EchoServer) -> None:
    """`meshfed gateway --registry ...` as a process: joins, opens egress, SIGTERM exits 0."""
    west = await registry.gateway(await registry.options(WEST, west_local(echo, "echo")))
    assert west.gateway is not None
    await registry.store.gateways.put(Gateway("west", (str(west.gateway.ingress.address),)))
    await registry.store.links.create(Link("east", "west"))
    port = free_port()
    await registry.export("echo", port, "10.1.0.5")
    opts = await registry.options(EAST, None)
    admin = free_port()
    ca = registry.tmp / "roots.pem"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "eastwest_gateway.main",
        *("--cluster", "east", "--registry", registry.address, "--join-token", opts.join_token),
        *("--trust-domain", EAST.trust_domain, "--registry-ca", str(ca)),
        *("--join-address", opts.join_address, "--state-dir", str(registry.tmp / "cli-state")),
        *("--region", EAST.region, "--zone", EAST.zone, "--listen", "127.0.0.1:0"),
        *("--admin", f"127.0.0.1:{admin}"),
        cwd=ROOT,
        stderr=asyncio.subprocess.PIPE,
    )
    try:

        async def configured() -> bool:
            try:
                return f'"listen": "127.0.0.1:{port}"'.encode() in await http_get(admin, "/config")
            except OSError:
                return False

        await eventually(configured, timeout=20)
        conn = await open_egress(port)
        assert await roundtrip(conn, b"via the cli") == b"via the cli"
        conn[1].close()
        assert (registry.tmp / "cli-state" / "view.json").exists()
        assert (registry.tmp / "cli-state" / "key.pem").stat().st_mode & 0o077 == 0
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 0, err.decode()
    assert opts.join_token not in err.decode()


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
