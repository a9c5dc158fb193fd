"""Reusable and single-use join tokens on the TrustService and the Registry (real SQLite)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from federation.errors import InvalidToken, NotFound, ValidationError
from federation.model import BundleReport, Cluster, JoinToken
from federation.registry.auth import TokenService
from federation.registry.service import Registry
from federation.registry.trust import TrustService, digest
from federation.store import Store, open_store
from federation.store.backend import ABSENT, Put
from federation.store.typed import storage_key
from tests.api.conftest import PASSPHRASE
from trust_bundle import PassphraseProtector

NOW = datetime(2026, 1, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = await open_store(f"sqlite:///{tmp_path / 'r.db'}")
    yield s
    await s.close()


@pytest.fixture
async def trust(store: Store) -> TrustService:
    service = TrustService(store, PassphraseProtector(PASSPHRASE))
    await service.ensure_root(NOW)
    for name in ("east", "west"):
        cluster = Cluster(name, "r", "z", f"{name}.example")
        await store.clusters.create(cluster)
        await service.issue_cluster_ca(cluster, NOW)
    return service


async def held(store: Store, token: str) -> JoinToken:
    return (await store.join_tokens.get(token.split(".")[0])).record


async def test_a_reusable_token_joins_until_it_expires_and_counts_each_use(
    store: Store, trust: TrustService
) -> None:
    token = await trust.create_join_token("east", HOUR, NOW, reusable=True)
    for n in range(1, 4):
        assert await trust.redeem_join_token(token, NOW + timedelta(minutes=n)) == "east"
        record = await held(store, token)
        assert (record.reusable, record.uses, record.used) == (True, n, False)
    with pytest.raises(InvalidToken, match=r"^join token expired$"):
        await trust.redeem_join_token(token, NOW + HOUR)
    assert (await held(store, token)).uses == 3  # a refused redemption is not counted
    secret = token.split(".", 1)[1]
    with pytest.raises(InvalidToken, match=r"^unknown join token$"):
        await trust.redeem_join_token(f"{token.split('.')[0]}.{secret}x", NOW)
    for bad, message in (("nodot", "malformed token"), ("zzzzzz.secret", "unknown join token")):
        with pytest.raises(InvalidToken, match=message):
            await trust.redeem_join_token(bad, NOW)


async def test_a_single_use_token_is_still_spent_by_its_first_join(
    store: Store, trust: TrustService
) -> None:
    token = await trust.create_join_token("east", HOUR, NOW)
    assert await trust.redeem_join_token(token, NOW) == "east"
    record = await held(store, token)
    assert (record.reusable, record.used, record.uses) == (False, True, 1)
    with pytest.raises(InvalidToken, match=r"^join token already used$"):
        await trust.redeem_join_token(token, NOW)


async def test_concurrent_redemptions_of_a_reusable_token_are_all_counted(
    store: Store, trust: TrustService
) -> None:
    token = await trust.create_join_token("east", HOUR, NOW, reusable=True)
    results = await asyncio.gather(
        *(trust.redeem_join_token(token, NOW) for _ in range(10)), return_exceptions=True
    )
    assert results == ["east"] * 10
    assert (await held(store, token)).uses == 10
    # the single-use rule under the same crowd: exactly one joins
    once = await trust.create_join_token("east", HOUR, NOW)
    results = await asyncio.gather(
        *(trust.redeem_join_token(once, NOW) for _ in range(10)), return_exceptions=True
    )
    assert results.count("east") == 1
    assert all(isinstance(r, InvalidToken) for r in results if r != "east")


async def test_revoked_tokens_are_refused_and_revoke_is_per_cluster(
    store: Store, trust: TrustService
) -> None:
    token = await trust.create_join_token("east", HOUR, NOW, reusable=True)
    token_id = token.split(".")[0]
    assert await trust.redeem_join_token(token, NOW) == "east"
    with pytest.raises(NotFound):  # west cannot revoke (or see) east's token
        await trust.revoke_join_token("west", token_id)
    with pytest.raises(NotFound):
        await trust.join_token("west", token_id)
    assert [t.id for t in await trust.list_join_tokens("west")] == []
    assert [t.id for t in await trust.list_join_tokens("east")] == [token_id]
    await trust.revoke_join_token("east", token_id)
    with pytest.raises(InvalidToken, match=r"^unknown join token$"):
        await trust.redeem_join_token(token, NOW)
    for missing in (token_id, "abcdef", "NOT-AN-ID!"):
        with pytest.raises(NotFound):
            await trust.revoke_join_token("east", missing)
    with pytest.raises(NotFound):
        await trust.list_join_tokens("ghost")


async def test_the_registry_caps_ttls_and_audits_create_and_revoke_in_one_commit(
    store: Store, trust: TrustService
) -> None:
    registry = Registry(store, trust, TokenService(store))
    day, year = timedelta(days=1), timedelta(days=365)
    for reusable, ttl in ((False, day + timedelta(seconds=1)), (True, year + timedelta(1))):
        with pytest.raises(ValidationError) as err:
            await registry.create_join_token("east", ttl, "ops", NOW, reusable=reusable)
        assert err.value.field == "ttl_seconds"
        assert str(int((year if reusable else day).total_seconds())) in err.value.message
    with pytest.raises(ValidationError, match="ttl_seconds"):
        await registry.create_join_token("east", timedelta(0), "ops", NOW)
    assert await store.join_tokens.list() == []  # nothing written by a refused request
    token, expires = await registry.create_join_token("east", year, "ops", NOW, reusable=True)
    assert expires == NOW + year
    later = NOW + timedelta(seconds=1)  # audit events sort by time: one second apart
    single, _ = await registry.create_join_token("east", day, "ops", later)
    with pytest.raises(NotFound):
        await registry.create_join_token("ghost", day, "ops", NOW)
    token_id = token.split(".")[0]
    await registry.revoke_join_token("east", token_id, "ops", later + timedelta(seconds=1))
    with pytest.raises(NotFound):
        await registry.revoke_join_token("east", token_id, "ops", later + timedelta(seconds=2))
    events = [
        (e.record.action, e.record.target, e.record.detail) for e in await store.events.list()
    ]
    # one event per change, none for the refused requests
    assert events == [
        ("create", "east", f"id={token_id} reusable=true"),
        ("create", "east", f"id={single.split('.')[0]} reusable=false"),
        ("delete", "east", f"id={token_id}"),
    ]
    assert [t.id for t in await registry.list_join_tokens("east")] == [single.split(".")[0]]


async def test_a_token_stored_before_reusable_tokens_still_decodes_and_joins(
    store: Store, trust: TrustService
) -> None:
    # The JSON an older registry wrote: no `reusable`, no `uses`.
    token_id = "0123456789abcdef"
    old: dict[str, object] = {
        "id": token_id,
        "cluster": "east",
        "secret_sha256": digest("old-secret"),
        "expires": (NOW + HOUR).isoformat(),
        "used": False,
    }
    key = storage_key(JoinToken.KIND, token_id)
    await store.commit([Put(key, orjson.dumps(old), ABSENT)])
    record = (await store.join_tokens.get(token_id)).record
    assert (record.reusable, record.uses, record.used) == (False, 0, False)
    assert JoinToken.from_dict(old) == record
    assert await trust.redeem_join_token("0123456789abcdef.old-secret", NOW) == "east"
    with pytest.raises(InvalidToken, match="already used"):
        await trust.redeem_join_token("0123456789abcdef.old-secret", NOW)
    listed = await trust.list_join_tokens("east")
    assert [(t.id, t.used, t.uses) for t in listed] == [(token_id, True, 1)]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"reusable": "yes"}, "reusable"),
        ({"uses": -1}, "uses"),
        ({"uses": True}, "uses"),
        ({"uses": 2}, "uses"),  # a single-use token cannot have been redeemed twice
        ({"reusable": True, "used": True}, "used"),
    ],
)
def test_join_token_fields_are_validated(changes: dict[str, object], field: str) -> None:
    data: dict[str, object] = {
        "id": "abcdef12",
        "cluster": "east",
        "secret_sha256": digest("s"),
        "expires": NOW.isoformat(),
        **changes,
    }
    with pytest.raises(ValidationError) as err:
        JoinToken.from_dict(data)
    assert err.value.field == field
    assert JoinToken.from_dict({**data, "reusable": True, "used": False, "uses": 7}).uses == 7


async def test_a_token_outlives_neither_its_cluster_nor_joins_a_new_one_of_that_name(
    store: Store, trust: TrustService
) -> None:
    registry = Registry(store, trust, TokenService(store))
    token, _ = await registry.create_join_token("west", HOUR, "ops", NOW, reusable=True)
    assert await trust.redeem_join_token(token, NOW) == "west"
    old = await held(store, token)
    await registry.delete_cluster("west", None, "ops", NOW)
    # delete_cluster deletes the cluster's tokens; one left behind (an older registry's,
    # or one minted while the delete ran) still joins nothing.
    await store.join_tokens.create(old)
    with pytest.raises(InvalidToken, match=r"^unknown join token$"):
        await trust.redeem_join_token(token, NOW)
    await registry.create_cluster(Cluster("west", "r", "z", "west.example"), "ops", NOW)
    with pytest.raises(InvalidToken, match=r"^unknown join token$"):
        await trust.redeem_join_token(token, NOW)
    assert await registry.list_join_tokens("west") == []  # the old one is not the new west's
    fresh, _ = await registry.create_join_token("west", HOUR, "ops", NOW, reusable=True)
    assert await trust.redeem_join_token(fresh, NOW) == "west"
    assert [t.id for t in await registry.list_join_tokens("west")] == [fresh.split(".")[0]]
    assert (await held(store, token)).uses == 1  # refused joins were not counted


async def test_deleting_a_cluster_deletes_its_join_tokens_and_bundle_report(
    store: Store, trust: TrustService
) -> None:
    registry = Registry(store, trust, TokenService(store))
    west = [
        (await registry.create_join_token("west", HOUR, "ops", NOW, reusable=reusable))[0]
        for reusable in (False, True, True)
    ]
    assert await trust.redeem_join_token(west[1], NOW) == "west"  # counted: a new revision
    east, _ = await registry.create_join_token("east", HOUR, "ops", NOW)
    for cluster in ("west", "east"):
        for replica in ("gw-0", "gw-1"):
            await trust.record_bundle_report(BundleReport(cluster, ("a" * 64,), NOW, replica))
    await registry.delete_cluster("west", None, "ops", NOW)
    assert [v.record.id for v in await store.join_tokens.list()] == [east.split(".")[0]]
    assert await store.bundle_reports.list("west/") == []
    assert len(await store.bundle_reports.list("east/")) == 2
    # Neither a report nor a token is needed: "gone already" does not fail the delete.
    for replica in ("gw-0", "gw-1"):
        await store.bundle_reports.delete(f"east/{replica}")
    await trust.revoke_join_token("east", east.split(".")[0])
    await registry.delete_cluster("east", None, "ops", NOW)
    assert await store.clusters.list() == []
    assert await store.join_tokens.list() == []
    assert await store.bundle_reports.list() == []
