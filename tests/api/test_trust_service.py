"""The registry's TrustService, as the control plane will use it (SQLite store, real TLS)."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from federation.errors import InvalidToken, PermissionDenied, ValidationError
from federation.model import Cluster
from federation.registry.trust import TrustService
from federation.store import Store, open_store
from tests.api.conftest import PASSPHRASE
from trust_bundle import PassphraseProtector, agent_id, gateway_id, generate_key, make_csr

NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = await open_store(f"sqlite:///{tmp_path / 'r.db'}")
    yield s
    await s.close()


async def test_concurrent_first_starts_agree_on_one_root(store: Store) -> None:
    services = [TrustService(store, PassphraseProtector(PASSPHRASE)) for _ in range(4)]
    await asyncio.gather(*(s.ensure_root(NOW) for s in services))
    bundles = {await s.bundle_pem() for s in services}
    assert len(bundles) == 1
    assert len(await store.cas.list()) == 2  # root + registry intermediate


async def test_join_tokens_are_single_use_expiring_and_checked(store: Store) -> None:
    trust = TrustService(store, PassphraseProtector(PASSPHRASE))
    await trust.ensure_root(NOW)
    cluster = Cluster("east", "r", "z", "east.example")
    await store.clusters.create(cluster)
    await trust.issue_cluster_ca(cluster, NOW)
    token = await trust.create_join_token("east", timedelta(minutes=5), NOW)
    stored = (await store.join_tokens.list())[0].record
    assert token.split(".", 1)[1] not in str(stored.to_dict())
    # Two concurrent redemptions: exactly one wins (compare-and-swap on the revision).
    results = await asyncio.gather(
        *(trust.redeem_join_token(token, NOW) for _ in range(3)), return_exceptions=True
    )
    assert results.count("east") == 1
    assert all(isinstance(r, InvalidToken) for r in results if r != "east")
    late = await trust.create_join_token("east", timedelta(minutes=5), NOW)
    with pytest.raises(InvalidToken, match="expired"):
        await trust.redeem_join_token(late, NOW + timedelta(minutes=5))
    for bad in ("nodot", ".x", "abc.", "zzzzzz.secret", late.split(".")[0] + ".wrong"):
        with pytest.raises(InvalidToken):
            await trust.redeem_join_token(bad, NOW)


async def test_component_csr_only_for_its_own_identity(store: Store) -> None:
    trust = TrustService(store, PassphraseProtector(PASSPHRASE))
    await trust.ensure_root(NOW)
    for name in ("east", "west"):
        c = Cluster(name, "r", "z", f"{name}.example")
        await store.clusters.create(c)
        await trust.issue_cluster_ca(c, NOW)
    key = generate_key()
    chain, bundle = await trust.sign_component_csr(
        "east", "gateway", make_csr(key, gateway_id("east.example", "east")), NOW
    )
    assert chain.count(b"BEGIN CERTIFICATE") == 2 and bundle.count(b"BEGIN CERTIFICATE") == 1
    for component, spiffe in (
        ("gateway", gateway_id("west.example", "west")),  # another cluster's gateway
        ("agent", gateway_id("east.example", "east")),  # wrong component
        ("agent", agent_id("east.example", "west")),
    ):
        with pytest.raises(PermissionDenied):
            await trust.sign_component_csr("east", component, make_csr(key, spiffe), NOW)
    with pytest.raises(ValidationError) as bad:
        await trust.sign_component_csr("east", "agent", b"not a csr", NOW)
    assert bad.value.field == "csr"
    with pytest.raises(ValidationError):
        await trust.sign_component_csr("east", "workload", b"", NOW)


async def test_server_credentials_pass_a_real_tls_handshake(store: Store, tmp_path: Path) -> None:
    trust = TrustService(store, PassphraseProtector(PASSPHRASE))
    now = datetime.now(UTC)
    await trust.ensure_root(now)
    chain, key, bundle = await trust.server_credentials(
        "registry-grpc", ["localhost"], ["127.0.0.1"], now
    )
    (tmp_path / "chain.pem").write_bytes(chain)
    (tmp_path / "key.pem").write_bytes(key)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(tmp_path / "chain.pem", tmp_path / "key.pem")
    client_ctx = ssl.create_default_context(cadata=bundle.decode())

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(await reader.readline())
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]
    async with server:
        for host in ("127.0.0.1", "localhost"):
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=client_ctx, server_hostname=host
            )
            writer.write(b"ping\n")
            assert await reader.readline() == b"ping\n"
            writer.close()
        with pytest.raises(ssl.SSLCertVerificationError):
            await asyncio.open_connection(
                "127.0.0.1", port, ssl=client_ctx, server_hostname="registry.elsewhere"
            )
