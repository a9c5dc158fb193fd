"""A real control plane on loopback: SQLite store in tmp_path, the real TrustService, mTLS.

Two clusters, east and west, each with its CA; `join_client(cluster, component)`
joins through the real Join RPC with a fresh token and returns a connected
ControlPlaneClient. Times are short (1 s lease, 0.3 s heartbeat) so the suite
stays fast; the clock is the wall clock (TLS checks certificates against it)
plus an offset tests can move forward.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from federation.client import ControlPlaneClient, Identity, join  # noqa: E402
from federation.controlplane.server import ControlPlane, start  # noqa: E402
from federation.controlplane.settings import Settings  # noqa: E402
from federation.model import Cluster, Gateway, Link  # noqa: E402
from federation.registry.trust import TrustService  # noqa: E402
from federation.store import Store, open_store  # noqa: E402
from trust_bundle import PassphraseProtector  # noqa: E402

LEASE_TTL = 1.0
SETTINGS = Settings(lease_ttl=LEASE_TTL, heartbeat=0.3, catchup_timeout=1.0)
CLUSTERS = {
    "east": Cluster("east", "us-east", "us-east-1a", "east.meshfed.test"),
    "west": Cluster("west", "us-west", "us-west-2a", "west.meshfed.test"),
    "north": Cluster("north", "eu-north", "eu-north-1a", "north.meshfed.test"),
}


@dataclass
class Clock:
    offset: timedelta = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


@dataclass
class Federation:
    store: Store
    trust: TrustService
    plane: ControlPlane
    clock: Clock
    clients: list[ControlPlaneClient]

    async def token(self, cluster: str, ttl: timedelta = timedelta(hours=1)) -> str:
        return await self.trust.create_join_token(cluster, ttl, self.clock())

    async def bundle(self) -> bytes:
        return await self.trust.bundle_pem()

    async def join(self, cluster: str, component: str, token: str | None = None) -> Identity:
        return await join(
            self.plane.join_address,
            token or await self.token(cluster),
            cluster=cluster,
            component=component,
            trust_domain=CLUSTERS[cluster].trust_domain,
            ca_pem=await self.bundle(),
        )

    def client(self, identity: Identity) -> ControlPlaneClient:
        client = ControlPlaneClient(self.plane.address, identity)
        self.clients.append(client)
        return client

    async def join_client(self, cluster: str, component: str) -> ControlPlaneClient:
        return self.client(await self.join(cluster, component))

    async def link(self, a: str, b: str, bidirectional: bool = True) -> None:
        await self.store.links.create(Link(a, b, bidirectional=bidirectional))

    async def gateway(self, cluster: str) -> None:
        c = CLUSTERS[cluster]
        await self.store.gateways.create(
            Gateway(
                cluster,
                (f"{cluster}.gw.test:15443",),
                region=c.region,
                zone=c.zone,
                trust_domain=c.trust_domain,
            )
        )


@pytest.fixture
async def fed(tmp_path: Path) -> AsyncIterator[Federation]:
    store = await open_store(f"sqlite:///{tmp_path / 'registry.db'}")
    clock = Clock()
    trust = TrustService(store, PassphraseProtector(b"controlplane-tests-passphrase"))
    await trust.ensure_root(clock())
    for cluster in CLUSTERS.values():
        await store.clusters.create(cluster)
        await trust.issue_cluster_ca(cluster, clock())
    plane = await start(store, trust, "127.0.0.1:0", now=clock, settings=SETTINGS)
    federation = Federation(store, trust, plane, clock, [])
    try:
        yield federation
    finally:
        for client in federation.clients:
            await client.close()
        await plane.stop(0)
        await store.close()


Joiner = Callable[[str, str], Awaitable[ControlPlaneClient]]
