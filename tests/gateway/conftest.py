"""Fixtures for the gateway tests (helpers live in gateway_pki.py and registry_support.py).

Certificates are made with ``cryptography`` directly (not trust_bundle, which is
developed separately): one root CA, gateway and workload leaves with SPIFFE URI
SANs, and an unrelated CA whose leaves must be refused.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from gateway_pki import PKI, EchoServer, make_pki, start_echo
from registry_support import EAST, NORTH, WEST, Registry, free_port

from federation.registry.auth import TokenService
from federation.registry.service import Registry as RegistryService
from federation.registry.trust import TrustService
from federation.store import open_store
from trust_bundle import PassphraseProtector


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "fuzz: seeded fuzz runs of the ClientHello parser")


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
async def echo() -> AsyncIterator[EchoServer]:
    server = await start_echo()
    yield server
    server.kill()


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
