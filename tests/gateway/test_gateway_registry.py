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
import os
import signal
import socket
import ssl
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from gateway_pki import PKI, EchoServer, start_echo

from eastwest_gateway.gateway import Gateway as StaticGateway
from eastwest_gateway.registry_mode import RegistryGateway, RegistryOptions
from eastwest_gateway.routefile import HostPort, Locality, Mode
from eastwest_gateway.settings import GatewaySettings
from federation.client import ControlPlaneClient, EndpointReporter, ExportedService, Identity, join
from federation.controlplane.server import ControlPlane, start
from federation.controlplane.settings import Settings
from federation.model import Cluster, Endpoint, Link, Port, ServiceExport
from federation.registry.auth import TokenService
from federation.registry.service import Registry as RegistryService
from federation.registry.trust import TrustService
from federation.store import Store, open_store
from trust_bundle import PassphraseProtector

EAST = Cluster("east", "us-east", "us-east-1a", "east.meshfed.test")
WEST = Cluster("west", "us-west", "us-west-2a", "west.meshfed.test")
NORTH = Cluster("north", "eu-north", "eu-north-1a", "north.meshfed.test")  # never linked
SETTINGS = GatewaySettings(probe_interval=0.2, connect_timeout=1.0, drain_deadline=1.0)
EAST_GW_ID = "spiffe://east.meshfed.test/meshfed/gateway/east"
WEST_GW_ID = "spiffe://west.meshfed.test/meshfed/gateway/west"
NORTH_GW_ID = "spiffe://north.meshfed.test/meshfed/gateway/north"
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
    service: RegistryService
    grpc_port: int
    join_port: int
    gateway_ports: dict[str, int]  # cluster -> its gateway's port, given to the registry
    echo_port: int
    plane: ControlPlane | None = None
    gateways: list[RegistryGateway] = field(default_factory=list)
    clients: list[ControlPlaneClient] = field(default_factory=list)
    reporters: list[EndpointReporter] = field(default_factory=list)

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
        """Start a registry-mode gateway on the port its cluster's record names."""
        gw = RegistryGateway(options)
        await gw.start(HostPort("127.0.0.1", self.gateway_ports[options.cluster]), None)
        self.gateways.append(gw)
        return gw

    async def identity(self, cluster: Cluster, component: str) -> Identity:
        return await join(
            f"127.0.0.1:{self.join_port}",
            await self.trust.create_join_token(cluster.name, timedelta(hours=1), datetime.now(UTC)),
            cluster=cluster.name,
            component=component,
            trust_domain=cluster.trust_domain,
            ca_pem=await self.trust.bundle_pem(),
        )

    async def agent_exports(self, cluster: Cluster, *services: ExportedService) -> None:
        """The cluster's agent reports its full state over ReportEndpoints; the stream
        (and so the lease the records live under) stays open until the test ends."""
        client = ControlPlaneClient(self.address, await self.identity(cluster, "agent"))
        self.clients.append(client)
        reporter = client.report_endpoints()
        self.reporters.append(reporter)
        await reporter.full_state(services)

    async def link(self, a: str, b: str, **kw: object) -> None:
        await self.service.create_link(Link(a, b, **kw), "test", datetime.now(UTC))  # type: ignore[arg-type]

    async def export(self, name: str, port: int, *addresses: str) -> None:
        """A west export written straight into the store (as if by west's agent);
        endpoints on the echo server's port (127.0.0.1 is the echo server)."""
        await self.store.exports.put(
            ServiceExport("west", "demo", name, datetime.now(UTC), (Port(port),))
        )
        for address in addresses:
            await self.store.endpoints.put(
                Endpoint("west", "demo", name, address, (Port(self.echo_port),), WEST.zone)
            )


@pytest.fixture
async def registry(tmp_path: Path, echo: EchoServer) -> AsyncIterator[Registry]:
    store = await open_store(f"sqlite:///{tmp_path / 'registry.db'}")
    trust = TrustService(store, PassphraseProtector(b"gateway-registry-tests"))
    service = RegistryService(store, trust, TokenService(store))
    now = datetime.now(UTC)
    await trust.ensure_root(now)
    ports = {c.name: free_port() for c in (EAST, WEST, NORTH)}
    for cluster in (EAST, WEST, NORTH):
        # Through the registry service, as `POST /api/v1/clusters` does: the cluster,
        # its Gateway record and its CA.
        with_gateway = replace(cluster, gateway_addresses=(f"127.0.0.1:{ports[cluster.name]}",))
        await service.create_cluster(with_gateway, "test", now)
    reg = Registry(tmp_path, store, trust, service, free_port(), free_port(), ports, echo.port)
    await reg.start()
    try:
        yield reg
    finally:
        for gw in reg.gateways:
            await gw.stop()
        for reporter in reg.reporters:
            with contextlib.suppress(Exception):
                await reporter.close()
        for client in reg.clients:
            await client.close()
        await reg.stop()
        await store.close()


def echo_service(port: int, echo_port: int) -> ExportedService:
    """demo/echo on service port `port` (named), served by the echo server's port."""
    ports = (Port(port, name="tcp"),)
    return ExportedService(
        ServiceExport("west", "demo", "echo", datetime.now(UTC), ports),
        (Endpoint("west", "demo", "echo", "127.0.0.1", (Port(echo_port, name="tcp"),), WEST.zone),),
    )


def west_ingress_ready(west: RegistryGateway, port: int, service: str = "echo") -> bool:
    """west's gateway routes `service`'s `port` (its own Watch is followed separately
    from east's, so east may open a listener a moment before west routes it)."""
    assert west.gateway is not None
    sni = f"{port}.{service}.demo.svc.clusterset.local"
    return any(r.sni == sni for r in west.gateway.route_file.routes)


def west_of(registry: Registry) -> RegistryGateway:
    return next(g for g in registry.gateways if g.options.cluster == "west")


async def federation(registry: Registry, echo: EchoServer) -> tuple[RegistryGateway, int]:
    """west's gateway up, east imports from west, west's agent exports demo/echo;
    returns (east's gateway, the service port = east's egress port)."""
    west = await registry.gateway(await registry.options(WEST, None))
    await registry.link("east", "west")
    port = free_port()
    await registry.agent_exports(WEST, echo_service(port, echo.port))
    east = await registry.gateway(await registry.options(EAST, None))
    await eventually(lambda: west_ingress_ready(west, port))
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


def client_context(identity: Identity, where: Path) -> ssl.SSLContext:
    """A TLS client presenting `identity` and verifying against its federation roots."""
    where.mkdir(parents=True, exist_ok=True)
    (where / "svid.pem").write_bytes(identity.chain_pem)
    (where / "key.pem").write_bytes(identity.key_pem)
    ctx = ssl.create_default_context(cadata=identity.bundle_pem.decode())
    ctx.check_hostname = False  # an SVID names a SPIFFE ID, not a host
    ctx.load_cert_chain(where / "svid.pem", where / "key.pem")
    return ctx


async def tls_exchange(port: int, sni: str, ctx: ssl.SSLContext, payload: bytes) -> bytes:
    """Send `payload` over TLS; what came back before the gateway closed (or the echo)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname=sni)
    try:
        writer.write(payload)
        await writer.drain()
        got = b""
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            while len(got) < len(payload):
                chunk = await asyncio.wait_for(reader.read(len(payload) - len(got)), 5)
                if not chunk:
                    break
                got += chunk
        return got
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


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


async def http_get(port: int, path: str) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    body = await reader.read()
    writer.close()
    return body


async def test_meshfed_gateway_registry_cli_process(registry: Registry, echo: EchoServer) -> None:
    """`meshfed gateway --registry ...` as a process: joins, opens egress, SIGTERM exits 0."""
    west = await registry.gateway(await registry.options(WEST, None))
    await registry.link("east", "west")
    port = free_port()
    await registry.agent_exports(WEST, echo_service(port, echo.port))
    await eventually(lambda: west_ingress_ready(west, port))
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


async def gateway_process(
    registry: Registry, extra: list[str], env: dict[str, str] | None = None, admin: int = 0
) -> asyncio.subprocess.Process:
    """`meshfed gateway --registry ...` as a process, with the token given by `extra`/`env`."""
    opts = await registry.options(EAST, None)
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "eastwest_gateway.main",
        *("--cluster", "east", "--registry", f"grpc://{registry.address}", *extra),
        *("--trust-domain", EAST.trust_domain, "--registry-ca", str(registry.tmp / "roots.pem")),
        *("--join-address", opts.join_address, "--state-dir", str(registry.tmp / "cli-state")),
        *("--listen", "127.0.0.1:0", *(("--admin", f"127.0.0.1:{admin}") if admin else ())),
        cwd=ROOT,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )


@pytest.mark.parametrize("via", ["file", "env"])
async def test_meshfed_gateway_joins_with_a_token_file_or_the_environment(
    registry: Registry, via: str
) -> None:
    """The token stays out of the command line: `--join-token-file` or
    `$MESHFED_JOIN_TOKEN` (what the install manifest uses); "joined as" at INFO."""
    token = (await registry.options(EAST, None)).join_token
    env = {"MESHFED_JOIN_TOKEN": ""}
    extra: list[str] = []
    if via == "file":
        (registry.tmp / "east.token").write_text(token + "\n")
        extra = ["--join-token-file", str(registry.tmp / "east.token")]
    else:
        env["MESHFED_JOIN_TOKEN"] = token
    admin = free_port()
    proc = await gateway_process(registry, extra, env, admin)
    assert proc.stderr is not None
    seen = b""
    try:
        while b"joined as" not in seen:
            line = await asyncio.wait_for(proc.stderr.readline(), 20)
            assert line, f"gateway exited: {seen.decode()}"
            seen += line

        async def serving() -> bool:
            try:
                return bool(await http_get(admin, "/config"))
            except OSError:
                return False

        await eventually(serving, timeout=20)  # signal handlers are installed by now
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 0, (seen + err).decode()
    assert f"joined as spiffe://{EAST.trust_domain}/meshfed/gateway/east" in seen.decode()
    assert token not in (seen + err).decode()


async def test_meshfed_gateway_token_the_registry_refuses_exits_1(registry: Registry) -> None:
    """Well-formed but unknown: refused at join time, exit 1 (as the agent), no secret."""
    token = "abcdef0123456789.not-a-real-secret"
    proc = await gateway_process(registry, [], {"MESHFED_JOIN_TOKEN": token})
    _, err = await asyncio.wait_for(proc.communicate(), 20)
    text = err.decode()
    assert proc.returncode == 1, text
    assert (
        "meshfed gateway: error: $MESHFED_JOIN_TOKEN: the registry refused the join token"
        " (unknown join token)" in text
    )
    assert "not-a-real-secret" not in text and "Traceback" not in text
