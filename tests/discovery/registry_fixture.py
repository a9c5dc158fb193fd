"""A real registry control plane on loopback for the agent tests.

Same shape as tests/controlplane/conftest.py: SQLite store, the real trust
service, mTLS, short lease and heartbeat so the tests stay fast.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from discovery_sync.agent import AgentConfig
from discovery_sync.types import Locality
from federation.controlplane.server import ControlPlane, start
from federation.controlplane.settings import Settings
from federation.model import Cluster, Gateway, Link
from federation.registry.trust import TrustService
from federation.store import Store, open_store
from trust_bundle import PassphraseProtector

SETTINGS = Settings(lease_ttl=1.0, heartbeat=0.3, catchup_timeout=1.0)
CLUSTERS = {
    "east": Cluster("east", "us-east", "us-east-1a", "east.meshfed.test"),
    "west": Cluster("west", "us-west", "us-west-2a", "west.meshfed.test"),
}


@dataclass
class Registry:
    store: Store
    trust: TrustService
    plane: ControlPlane

    async def token(self, cluster: str) -> str:
        return await self.trust.create_join_token(cluster, timedelta(hours=1), datetime.now(UTC))

    async def bundle(self) -> bytes:
        return await self.trust.bundle_pem()


@asynccontextmanager
async def registry(tmp_path: Path) -> AsyncIterator[Registry]:
    store = await open_store(f"sqlite:///{tmp_path / 'registry.db'}")
    trust = TrustService(store, PassphraseProtector(b"discovery-tests-passphrase"))
    await trust.ensure_root(datetime.now(UTC))
    for cluster in CLUSTERS.values():
        await store.clusters.create(cluster)
        await trust.issue_cluster_ca(cluster, datetime.now(UTC))
    await store.links.create(Link("east", "west"))
    await store.gateways.create(Gateway("west", ("127.0.0.1:15443",), healthy=True))
    await store.gateways.create(Gateway("east", ("127.0.0.1:15444",), healthy=True))
    plane = await start(store, trust, "127.0.0.1:0", settings=SETTINGS)
    try:
        yield Registry(store, trust, plane)
    finally:
        await plane.stop(0)
        await store.close()


async def agent_config(reg: Registry, cluster: str, **kw: Any) -> AgentConfig:
    """An agent of `cluster` joining `reg` (fresh join token); `kw` sets the rest."""
    return AgentConfig(
        cluster=cluster,
        registry=reg.plane.address,
        join_address=reg.plane.join_address,
        join_token=await reg.token(cluster),
        trust_domain=CLUSTERS[cluster].trust_domain,
        registry_ca=await reg.bundle(),
        locality=Locality(CLUSTERS[cluster].region, CLUSTERS[cluster].zone),
        **kw,
    )
