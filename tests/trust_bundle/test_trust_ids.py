"""SPIFFE ID parsing, meshfed identity shapes and entitlements."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trust_bundle.errors import InvalidIdentity
from trust_bundle.ids import (
    Entitlement,
    SpiffeId,
    agent_id,
    cluster_entitlement,
    gateway_id,
    parse_spiffe_id,
    trust_domain_id,
    workload_id,
)


def test_identity_shapes():
    assert str(workload_id("td", "ns1", "sa1")) == "spiffe://td/ns/ns1/sa/sa1"
    assert str(gateway_id("td", "c1")) == "spiffe://td/meshfed/gateway/c1"
    assert str(agent_id("td", "c1")) == "spiffe://td/meshfed/agent/c1"
    assert str(trust_domain_id("td")) == "spiffe://td"
    assert not trust_domain_id("td").is_leaf_id


@pytest.mark.parametrize(
    "bad",
    [
        "http://td/x",
        "spiffe://",
        "spiffe://TD/x",
        "spiffe://td:443/x",
        "spiffe://user@td/x",
        "spiffe://td/x?q=1",
        "spiffe://td/x#f",
        "spiffe://td/",
        "spiffe://td//x",
        "spiffe://td/./x",
        "spiffe://td/../x",
        "spiffe://td/x y",
        "spiffe://" + "a" * 256,
        "spiffe://td/" + "a" * 2048,
    ],
)
def test_malformed_ids_are_rejected(bad):
    with pytest.raises(InvalidIdentity):
        parse_spiffe_id(bad)


def test_non_string_and_bad_segments():
    with pytest.raises(InvalidIdentity):
        parse_spiffe_id(42)  # type: ignore[arg-type]
    with pytest.raises(InvalidIdentity):
        gateway_id("td", "a/b")
    with pytest.raises(InvalidIdentity):
        workload_id("td", "..", "sa")


segment = st.from_regex(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,10}", fullmatch=True)


@given(st.from_regex(r"[a-z0-9._-]{1,30}", fullmatch=True), st.lists(segment, max_size=4))
def test_parse_inverts_str(td, segments):
    sid = SpiffeId(td, "".join(f"/{s}" for s in segments))
    assert parse_spiffe_id(str(sid)) == sid


def test_entitlement():
    ent = cluster_entitlement("td", "a", namespaces=["shop"])
    assert ent.allows(gateway_id("td", "a")) and ent.allows(agent_id("td", "a"))
    assert ent.allows(workload_id("td", "shop", "web"))
    assert not ent.allows(gateway_id("td", "b"))
    assert not ent.allows(workload_id("td", "bank", "web"))
    assert not ent.allows(workload_id("other", "shop", "web"))
    assert not ent.allows(SpiffeId("td", "/ns/shop/sa/web/extra"))
    assert not Entitlement().allows(gateway_id("td", "a"))
