"""Reusable join tokens through the real Join RPC: many SVIDs from one token, until it
expires or is revoked (gateway replicas, HPA scale-ups, restarted agents)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from cryptography import x509

from federation.errors import InvalidToken
from tests.controlplane.conftest import Federation

HOUR = timedelta(hours=1)


async def reusable_token(fed: Federation, cluster: str, ttl: timedelta = HOUR) -> str:
    return await fed.trust.create_join_token(cluster, ttl, fed.clock(), reusable=True)


async def uses(fed: Federation, token: str) -> int:
    return (await fed.store.join_tokens.get(token.split(".")[0])).record.uses


async def test_one_reusable_token_joins_an_agent_and_two_gateway_replicas(
    fed: Federation,
) -> None:
    token = await reusable_token(fed, "east")
    identities = [
        await fed.join("east", component, token) for component in ("agent", "gateway", "gateway")
    ]
    serials = {x509.load_pem_x509_certificate(i.chain_pem).serial_number for i in identities}
    assert len(serials) == 3  # three SVIDs, each with its own key
    assert [i.spiffe_id for i in identities] == [
        "spiffe://east.meshfed.test/meshfed/agent/east",
        "spiffe://east.meshfed.test/meshfed/gateway/east",
        "spiffe://east.meshfed.test/meshfed/gateway/east",
    ]
    assert await uses(fed, token) == 3
    # each SVID works on the mTLS port
    await fed.client(identities[1]).report_health([])


async def test_a_scale_up_joins_every_replica_at_once(fed: Federation) -> None:
    token = await reusable_token(fed, "west")
    joined = await asyncio.gather(*(fed.join("west", "gateway", token) for _ in range(6)))
    assert len({i.chain_pem for i in joined}) == 6
    assert await uses(fed, token) == 6


async def test_expired_and_revoked_reusable_tokens_are_refused(fed: Federation) -> None:
    short = await reusable_token(fed, "east", timedelta(seconds=30))
    await fed.join("east", "agent", short)
    kept = await reusable_token(fed, "east")
    fed.clock.offset = timedelta(minutes=1)
    with pytest.raises(InvalidToken, match="expired"):
        await fed.join("east", "agent", short)
    await fed.join("east", "agent", kept)
    await fed.trust.revoke_join_token("east", kept.split(".")[0])
    with pytest.raises(InvalidToken, match="unknown join token"):
        await fed.join("east", "agent", kept)
    assert await uses(fed, short) == 1


async def test_a_single_use_token_still_joins_once(fed: Federation) -> None:
    token = await fed.token("north")
    await fed.join("north", "gateway", token)
    with pytest.raises(InvalidToken, match="already used"):
        await fed.join("north", "gateway", token)
