"""Fixtures for the discovery tests (builders live in discovery_views.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from discovery_views import CALLER, clusterset, headless, view

from discovery_sync.dns.server import DnsServer
from discovery_sync.dns.zone import compile_zone


@pytest.fixture
async def dns_server() -> AsyncIterator[DnsServer]:
    server = DnsServer(compile_zone(view(clusterset(), headless()), CALLER))
    await server.start("127.0.0.1", 0)
    yield server
    await server.close()
