"""SPIFFE bundle parser/serializer: round trips, precise rejections, interop."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives import serialization
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from spiffe import TrustDomain, X509Bundle

from trust_bundle.ca import create_intermediate_ca, create_root_ca
from trust_bundle.errors import InvalidBundle
from trust_bundle.spiffe_bundle import (
    MAX_SEQUENCE,
    SpiffeBundle,
    parse_bundle,
    parse_bundle_map,
    serialize_bundle,
    serialize_bundle_map,
)

_T0 = datetime.now(UTC)
ROOTS = tuple(create_root_ca(_T0).certificate for _ in range(4))
INTERMEDIATE = create_intermediate_ca(create_root_ca(_T0), "a", "a.test", _T0).certificate
TD = "a.meshfed.test"


def good_doc() -> dict:
    return json.loads(serialize_bundle(SpiffeBundle(TD, ROOTS[:2], 7, 300)))


def parse_doc(doc: object) -> SpiffeBundle:
    return parse_bundle(TD, json.dumps(doc))


# ------------------------------------------------------------------ strategies

jwt_keys = st.fixed_dictionaries(
    {
        "use": st.just("jwt-svid"),
        "kty": st.sampled_from(["EC", "RSA", "OKP"]),
        "kid": st.text(alphabet="abcdefghij0123456789", min_size=1, max_size=12),
    }
).map(lambda d: json.dumps(d, sort_keys=True, separators=(",", ":")))

bundles = st.builds(
    SpiffeBundle,
    trust_domain=st.from_regex(r"[a-z0-9]([a-z0-9.-]{0,20}[a-z0-9])?", fullmatch=True),
    x509_authorities=st.lists(st.sampled_from(ROOTS), min_size=1, max_size=4, unique=True).map(
        tuple
    ),
    sequence=st.none() | st.integers(0, MAX_SEQUENCE),
    refresh_hint=st.none() | st.integers(1, 10**9),
    other_keys=st.lists(jwt_keys, max_size=2, unique=True).map(tuple),
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@given(bundles)
@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
def test_round_trip(bundle):
    data = serialize_bundle(bundle)
    parsed = parse_bundle(bundle.trust_domain, data)
    assert parsed == bundle
    assert serialize_bundle(parsed) == data


@given(st.lists(bundles, max_size=3, unique_by=lambda b: b.trust_domain))
@settings(max_examples=30, suppress_health_check=[HealthCheck.too_slow])
def test_bundle_map_round_trip(items):
    data = serialize_bundle_map(items)
    assert parse_bundle_map(data) == {b.trust_domain: b for b in items}


@given(json_values)
def test_arbitrary_json_is_rejected_with_invalid_bundle_only(value):
    with pytest.raises(InvalidBundle):
        parse_doc(value)


@given(st.binary(max_size=200))
def test_arbitrary_bytes_are_rejected_with_invalid_bundle_only(data):
    with pytest.raises(InvalidBundle):
        parse_bundle(TD, data)


def _mutate(doc: dict, path: tuple, value: object) -> dict:
    target = doc
    for step in path[:-1]:
        target = target[step]
    if value is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return doc


_DELETE = object()

MUTATIONS = [
    (("keys",), _DELETE, "keys: required array"),
    (("keys",), {"a": 1}, "keys: required array"),
    (("keys",), [], "no x509-svid authority"),
    (("spiffe_sequence",), -1, "spiffe_sequence"),
    (("spiffe_sequence",), MAX_SEQUENCE + 1, "spiffe_sequence"),
    (("spiffe_sequence",), "7", "spiffe_sequence"),
    (("spiffe_sequence",), True, "spiffe_sequence"),
    (("spiffe_sequence",), 7.5, "spiffe_sequence"),
    (("spiffe_refresh_hint",), 0, "spiffe_refresh_hint"),
    (("spiffe_refresh_hint",), -300, "spiffe_refresh_hint"),
    (("spiffe_refresh_hint",), "300", "spiffe_refresh_hint"),
    (("keys", 0), "x", r"keys\[0\]: must be a JSON object"),
    (("keys", 1, "use"), _DELETE, r"keys\[1\].use: required"),
    (("keys", 0, "kty"), 3, r"keys\[0\].kty: required"),
    (("keys", 0, "kid"), "k1", r"keys\[0\].kid: must not be set"),
    (("keys", 0, "x5c"), "MIIB", r"keys\[0\].x5c: must be an array"),
    (("keys", 0, "x5c", 0), "not base64!", r"keys\[0\].x5c\[0\]: not base64"),
    (("keys", 0, "x5c", 0), base64.b64encode(b"\x30\x03\x02\x01\x01").decode(), "not a DER"),
    (("keys", 0, "x"), "AAAA", r"keys\[0\].x: does not match"),
    (("keys", 0, "kty"), "RSA", r"keys\[0\].kty: does not match"),
    (("keys", 0, "crv"), "P-384", r"keys\[0\].crv: does not match"),
]


@pytest.mark.parametrize(("path", "value", "message"), MUTATIONS)
def test_malformed_documents_are_rejected_precisely(path, value, message):
    with pytest.raises(InvalidBundle, match=message):
        parse_doc(_mutate(good_doc(), path, value))


def test_tampered_certificate_bytes_are_rejected():
    doc = good_doc()
    der = bytearray(base64.b64decode(doc["keys"][0]["x5c"][0]))
    der[len(der) // 2] ^= 0x01  # flip one bit inside the signed part
    doc["keys"][0]["x5c"][0] = base64.b64encode(bytes(der)).decode()
    with pytest.raises(InvalidBundle, match=r"keys\[0\]"):
        parse_doc(doc)


def test_non_ca_and_duplicate_authorities_are_rejected(pki, issue):
    doc = good_doc()
    leaf = issue(pki.a).svid.certificate
    doc["keys"][0]["x5c"] = [
        base64.b64encode(leaf.public_bytes(serialization.Encoding.DER)).decode()
    ]
    with pytest.raises(InvalidBundle, match="not a CA"):
        parse_doc(doc)
    doc = good_doc()
    doc["keys"][1] = doc["keys"][0]
    with pytest.raises(InvalidBundle, match="duplicate authority"):
        parse_doc(doc)


def test_duplicate_json_members_and_bad_json_are_rejected():
    with pytest.raises(InvalidBundle, match="duplicate JSON member"):
        parse_bundle(TD, '{"keys": [], "keys": []}')
    with pytest.raises(InvalidBundle, match=r"not JSON: .* line 1"):
        parse_bundle(TD, '{"keys": [')


def test_spec_ignore_rules():
    """Trust Domain and Bundle §4.1.3/§4.2 and X509-SVID §6.2: unknown uses/types are
    ignored (kept verbatim), x509-svid keys without x5c ignored, extra x5c ignored."""
    doc = good_doc()
    doc["keys"].append({"use": "jwt-svid", "kty": "EC", "kid": "k"})
    doc["keys"].append({"use": "x509-svid", "kty": "EC"})
    doc["keys"][0]["x5c"].append("ignored")
    doc["other_member"] = 1
    bundle = parse_doc(doc)
    assert bundle.x509_authorities == ROOTS[:2]
    assert bundle.other_keys == ('{"kid":"k","kty":"EC","use":"jwt-svid"}',)
    assert parse_bundle(TD, serialize_bundle(bundle)) == bundle


def test_jwt_only_bundle_allowed_when_asked():
    doc = {"keys": [{"use": "jwt-svid", "kty": "EC", "kid": "k"}]}
    assert parse_bundle(TD, json.dumps(doc), require_x509=False).x509_authorities == ()


def test_intermediate_authority_is_accepted_without_self_signature():
    """X509-SVID §6.1: authorities SHOULD (not MUST) be self-signed."""
    bundle = SpiffeBundle(TD, (INTERMEDIATE,), 1, 60)
    assert parse_bundle(TD, serialize_bundle(bundle)) == bundle


def test_document_shape_matches_the_spec():
    doc = good_doc()
    assert list(doc) == ["keys", "spiffe_sequence", "spiffe_refresh_hint"]
    key = doc["keys"][0]
    assert key["use"] == "x509-svid" and key["kty"] == "EC" and key["crv"] == "P-256"
    assert "kid" not in key and len(key["x5c"]) == 1
    assert len(base64.urlsafe_b64decode(key["x"] + "==")) == 32


def test_bundle_map_rejects_bad_trust_domain_names():
    good = json.loads(serialize_bundle_map([SpiffeBundle(TD, ROOTS[:1], 1, 60)]))
    for bad in ("a.test", "spiffe://a.test/path", "spiffe://A_B"):
        with pytest.raises(InvalidBundle):
            parse_bundle_map(json.dumps({bad: good[f"spiffe://{TD}"]}))
    with pytest.raises(InvalidBundle, match="must be a JSON object"):
        parse_bundle_map("[]")
    with pytest.raises(InvalidBundle, match=r"spiffe://a.meshfed.test.keys"):
        parse_bundle_map(json.dumps({f"spiffe://{TD}": {"keys": 1}}))
    with pytest.raises(InvalidBundle, match="two bundles"):
        serialize_bundle_map([SpiffeBundle(TD, ROOTS[:1]), SpiffeBundle(TD, ROOTS[1:2])])


def test_model_invariants():
    with pytest.raises(InvalidBundle):
        SpiffeBundle("Bad_TD!", ROOTS[:1])
    with pytest.raises(InvalidBundle):
        SpiffeBundle(TD, (ROOTS[0], ROOTS[0]))
    with pytest.raises(InvalidBundle):
        SpiffeBundle(TD, ROOTS[:1], sequence=-1)
    with pytest.raises(InvalidBundle):
        SpiffeBundle(TD, ROOTS[:1], refresh_hint=0)


def test_roots_load_with_the_spiffe_package():
    bundle = parse_bundle(TD, serialize_bundle(SpiffeBundle(TD, ROOTS[:3], 2, 60)))
    x509_bundle = X509Bundle.parse(TrustDomain(TD), bundle.authorities_pem())
    assert x509_bundle.x509_authorities == set(ROOTS[:3])
    assert str(x509_bundle.trust_domain) == TD
