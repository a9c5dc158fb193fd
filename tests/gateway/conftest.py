"""Fixtures for the gateway tests (helpers live in gateway_pki.py).

Certificates are made with ``cryptography`` directly (not trust_bundle, which is
developed separately): one root CA, gateway and workload leaves with SPIFFE URI
SANs, and an unrelated CA whose leaves must be refused.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from gateway_pki import PKI, EchoServer, make_pki, start_echo


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
