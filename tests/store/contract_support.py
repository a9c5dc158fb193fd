"""Records, watch helpers and a feed mirror shared by the store contract suite.

Split from test_contract.py when the suite outgrew one file: the contract is held in
test_contract.py (CRUD, commits), test_contract_leases.py and test_contract_feed.py,
all against every backend through the `store` / `store_url` fixtures in conftest.py.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from federation.model import (
    Cluster,
    Endpoint,
    Gateway,
    Link,
    Port,
    Record,
    ServiceExport,
    TrustDomain,
)
from federation.store import Store
from federation.store.typed import FeedMessage, TypedSnapshot

WATCH_TIMEOUT = 10.0
NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"

# --------------------------------------------------------------------------- records


def cluster(name: str = "east", v: int = 0) -> Cluster:
    return Cluster(
        name=name,
        region="us-east-1",
        zone="us-east-1a",
        trust_domain=f"{name}.local",
        gateway_addresses=(f"10.0.0.{v % 250 + 1}:15443",),
        labels={"version": str(v)},
    )


def link(v: int = 0, a: str = "east", b: str = "west") -> Link:
    return Link(a, b, namespaces=(f"ns{v}",), mode="passthrough" if v % 2 else "terminating")


def export(v: int = 0, name: str = "cart", cluster_name: str = "east") -> ServiceExport:
    return ServiceExport(cluster_name, "shop", name, created=NOW, ports=(Port(8000 + v),))


def endpoint(
    address: str = "10.1.0.1", v: int = 1, *, cluster_name: str = "east", service: str = "cart"
) -> Endpoint:
    return Endpoint(cluster_name, "shop", service, address, (Port(8080),), zone="z1", weight=v)


def gateway(v: int = 0, cluster_name: str = "east") -> Gateway:
    return Gateway(cluster_name, (f"gw.{cluster_name}.example:{15443 + v}",))


def trust_domain(v: int = 0, name: str = "east.local") -> TrustDomain:
    return TrustDomain(name, (PEM,), sequence=v)


# collection attribute on Store -> factory of a record whose key does not depend on v
KINDS: dict[str, Callable[[int], Record]] = {
    "clusters": lambda v: cluster("east", v),
    "links": link,
    "exports": export,
    "endpoints": lambda v: endpoint("10.1.0.1", v),
    "gateways": gateway,
    "trust_domains": trust_domain,
}

# ---------------------------------------------------------------------- watch helpers


async def next_msg(it: AsyncIterator[Any], timeout: float = WATCH_TIMEOUT) -> Any:
    try:
        return await asyncio.wait_for(anext(it), timeout)
    except TimeoutError:
        pytest.fail(f"watch delivered nothing within {timeout} s")


async def changes_until(
    it: AsyncIterator[Any], revision: int, timeout: float = WATCH_TIMEOUT
) -> list[Any]:
    """Every message up to and including the first whose revision is >= `revision`."""
    out: list[Any] = []
    deadline = time.monotonic() + timeout
    while not out or out[-1].revision < revision:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            got = [m.revision for m in out]
            pytest.fail(f"watch did not reach revision {revision} in {timeout} s (got {got})")
        out.append(await next_msg(it, remaining))
    return out


def revisions(messages: list[Any]) -> list[int]:
    return [m.revision for m in messages]


def only_changes(messages: list[Any]) -> list[Any]:
    kinds = {type(m).__name__ for m in messages}
    assert kinds <= {"TypedChanges", "Changes"}, f"expected only Changes, got {kinds}"
    return messages


def apply(state: dict[str, Any], message: FeedMessage) -> None:
    """Mirror a typed feed into {kind/key: record}."""
    if isinstance(message, TypedSnapshot):
        state.clear()
        for item in message.items:
            state[f"{item.record.KIND}/{item.record.key}"] = item.record
        return
    for change in message.changes:
        full = f"{change.kind}/{change.key}"
        if change.type == "delete":
            assert full in state, f"delete of {full} which the mirror does not hold"
            del state[full]
        else:
            state[full] = change.record


async def current_state(store: Store) -> dict[str, Record]:
    state: dict[str, Record] = {}
    for coll in (
        store.clusters,
        store.links,
        store.exports,
        store.endpoints,
        store.gateways,
        store.trust_domains,
    ):
        for item in await coll.list():
            state[f"{coll.kind}/{item.record.key}"] = item.record
    return state


async def eventually(check: Callable[[], Any], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if await check():
            return
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout} s")
        await asyncio.sleep(0.05)
