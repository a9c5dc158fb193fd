"""Registry mode end to end, the shared parts: the registry the `registry` fixture
(conftest.py) starts (SQLite in tmp_path, the real TrustService, the registry service,
the gRPC control plane with mTLS), registry-mode gateways on loopback, and the clients
the tests use (test_gateway_registry.py, test_gateway_registry_process.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import ssl
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml
from gateway_pki import EchoServer

from eastwest_gateway.registry_mode import RegistryGateway, RegistryOptions
from eastwest_gateway.routefile import HostPort, Locality
from eastwest_gateway.settings import GatewaySettings
from federation.client import ControlPlaneClient, EndpointReporter, ExportedService, Identity, join
from federation.controlplane.server import ControlPlane, start
from federation.controlplane.settings import Settings
from federation.model import Cluster, Endpoint, Link, Port, ServiceExport
from federation.registry.service import Registry as RegistryService
from federation.registry.trust import TrustService
from federation.store import Store

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


async def http_get(port: int, path: str) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    body = await reader.read()
    writer.close()
    return body


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
