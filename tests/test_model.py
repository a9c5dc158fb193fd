"""Unit and property tests of the domain model (`federation.model`).

Validation must name the bad field (the API and CLI show the message verbatim), and
`from_dict` is fed data from the network and from disk: whatever it is given, it
either builds a valid record or raises `federation.errors.ValidationError`, never
anything else.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from federation.errors import ValidationError
from federation.model import (
    KIND_BY_NAME,
    RECORD_KINDS,
    Cluster,
    Condition,
    Endpoint,
    Gateway,
    Link,
    Port,
    Record,
    ServiceExport,
    ServiceKey,
    TrustDomain,
    endpoint_prefix,
)

PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
T = NOW.isoformat()


def bad(field: str) -> Any:
    """pytest.raises(ValidationError) that also checks which field was named."""
    return pytest.raises(ValidationError, match=rf"^{re.escape(field)}: ")


def cluster(**kw: Any) -> Cluster:
    args: dict[str, Any] = {
        "name": "east",
        "region": "us-east-1",
        "zone": "us-east-1a",
        "trust_domain": "east.local",
    }
    args.update(kw)
    return Cluster(**args)


def endpoint(**kw: Any) -> Endpoint:
    args: dict[str, Any] = {
        "cluster": "east",
        "namespace": "shop",
        "service": "cart",
        "address": "10.0.0.1",
        "ports": (Port(8080),),
        "zone": "z1",
    }
    args.update(kw)
    return Endpoint(**args)


def export(**kw: Any) -> ServiceExport:
    args: dict[str, Any] = {"cluster": "east", "namespace": "shop", "name": "cart", "created": NOW}
    args.update(kw)
    return ServiceExport(**args)


SAMPLES: list[Record] = [
    cluster(
        gateway_addresses=("gw.east.example:15443", "[2001:db8::1]:15443"),
        labels={"team": "payments", "example.com/tier": "", "topology.kubernetes.io/zone": "a"},
        source="kubernetes",
        network="net-1",
    ),
    Link(
        "east",
        "west",
        bidirectional=False,
        mode="passthrough",
        namespaces=("shop", "default"),
        conditions=(Condition("Ready", "True", "LinkUp", "all good", NOW),),
        credential_expiry=NOW + timedelta(days=30),
    ),
    export(ports=(Port(80, "TCP", "http", "http"), Port(53, "UDP")), scope=("west", "north")),
    endpoint(address="2001:db8::5", ready=False, weight=0),
    Gateway("east", ("10.0.0.1:15443", "gw.example.com:443"), modes=("passthrough",), healthy=True),
    Gateway(
        "west",
        ("gw.west.example:15443",),
        healthy=False,
        region="eu-west-1",
        zone="eu-west-1b",
        trust_domain="west.meshfed.example",
    ),
    TrustDomain("east.local", (PEM, PEM), sequence=7, refresh_hint_seconds=60),
]

# ============================================================================ names


LABEL_OK = ["a", "0", "a-b", "abc123", "1abc", "a" * 63, "a--b"]
LABEL_BAD = ["", "A", "Abc", "-a", "a-", "a_b", "a.b", "a b", "a" * 64, "\u00e9t\u00e9", "a\n"]


@pytest.mark.parametrize("name", LABEL_OK)
def test_cluster_and_namespace_accept_rfc1123_labels(name: str) -> None:
    assert cluster(name=name).name == name
    assert export(namespace=name).namespace == name
    assert endpoint(cluster=name).cluster == name


@pytest.mark.parametrize("name", LABEL_BAD)
def test_cluster_and_namespace_reject_non_labels(name: str) -> None:
    with bad("name"):
        cluster(name=name)
    with bad("namespace"):
        export(namespace=name)
    with bad("namespace"):
        ServiceKey(name, "cart")
    with bad("cluster"):
        endpoint(cluster=name)
    with bad("cluster"):
        Gateway(name, ("gw:1",))
    with bad("a"):
        Link(name, "west")
    with bad("namespaces[1]"):
        Link("east", "west", namespaces=("ok", name))


@pytest.mark.parametrize("value", [5, None, b"east", ["east"]])
def test_names_must_be_strings(value: Any) -> None:
    with bad("name"):
        cluster(name=value)


def test_service_names_are_rfc1035_labels() -> None:
    assert export(name="a1").name == "a1"
    for name in ("1abc", "", "Cart", "c" * 64):
        with bad("name"):
            export(name=name)
        with bad("name"):
            ServiceKey("shop", name)
    with bad("service"):
        ServiceKey.parse("no-slash")
    assert ServiceKey.parse("shop/cart") == ServiceKey("shop", "cart")
    assert str(ServiceKey("shop", "cart")) == "shop/cart"


@pytest.mark.parametrize("field", ["region", "zone", "network"])
def test_locality_fields_are_non_empty_label_values(field: str) -> None:
    for ok in ("us-east-1", "US_East.1", "a", "z" * 63):
        assert getattr(cluster(**{field: ok}), field) == ok
    for value in ("", " ", "us east", "-a", "a-", "z" * 64, 1, None):
        with bad(field):
            cluster(**{field: value})
    with bad("zone"):
        endpoint(zone="")


def test_trust_domain_names() -> None:
    assert cluster(trust_domain="cluster.local").trust_domain == "cluster.local"
    for value in ("", "Cluster.local", "spiffe://x", "a b", "x/y"):
        with bad("trust_domain"):
            cluster(trust_domain=value)
        with bad("name"):
            TrustDomain(value, (PEM,))


def test_labels_name_the_bad_key() -> None:
    assert cluster(labels={"b": "2", "a": ""}).labels == {"a": "", "b": "2"}
    with pytest.raises(ValidationError, match=r"^labels\['bad key'\]: "):
        cluster(labels={"bad key": "x"})
    with pytest.raises(ValidationError, match=r"^labels\['k'\]: "):
        cluster(labels={"k": "bad value"})
    with pytest.raises(ValidationError, match=r"^labels\['k'\]: "):
        cluster(labels={"k": 5})
    with bad("labels"):
        cluster(labels=["a"])


# ============================================================================ ports


@pytest.mark.parametrize("number", [1, 80, 65535])
def test_ports_in_range(number: int) -> None:
    assert Port(number).port == number
    assert endpoint(ports=(Port(number),)).ports[0].port == number


@pytest.mark.parametrize("number", [0, -1, 65536, 10**6, True, False, "80", 80.0, None])
def test_ports_out_of_range_or_not_integers(number: Any) -> None:
    with bad("port"):
        Port(number)
    with bad("port"):
        Port.from_dict({"port": number})
    with bad("port"):
        endpoint(ports=({"port": number},))


def test_port_lists() -> None:
    with bad("ports"):
        endpoint(ports=())
    with bad("ports"):
        endpoint(ports=(Port(80), Port(80)))
    assert len(endpoint(ports=(Port(80), Port(80, "UDP"))).ports) == 2
    with bad("protocol"):
        Port(80, "HTTP")
    with bad("name"):
        Port(80, name="Http")
    with bad("ports"):
        endpoint(ports="80")
    with bad("app_protocol"):
        Port(80, app_protocol=5)  # type: ignore[arg-type]


# ======================================================================== addresses


@pytest.mark.parametrize(
    ("given", "canonical"),
    [
        ("10.0.0.1", "10.0.0.1"),
        ("::1", "::1"),
        ("2001:DB8:0:0::1", "2001:db8::1"),
        ("svc.example.com", "svc.example.com"),
        ("Gateway.Example.COM", "gateway.example.com"),
        ("localhost", "localhost"),
        ("a" * 63 + ".example", "a" * 63 + ".example"),
    ],
)
def test_addresses_ipv4_ipv6_dns(given: str, canonical: str) -> None:
    assert endpoint(address=given).address == canonical


@pytest.mark.parametrize(
    "value",
    [
        "",
        "a..b",
        "-a.example",
        "a-.example",
        "under_score.example",
        "a" * 64 + ".example",
        ".".join(["abcdefgh"] * 30),  # 269 characters: longer than a DNS name may be
        "10.0.0.1:80",
        "http://x",
        "a b",
        "[::1]",
        "1.2.3.4/24",
        5,
        None,
    ],
)
def test_addresses_rejected(value: Any) -> None:
    with bad("address"):
        endpoint(address=value)


@pytest.mark.parametrize("value", ["10.0.0.256", "300.1.1.1", "1.2.3", "999"])
def test_malformed_ipv4_is_not_taken_for_a_dns_name(value: str) -> None:
    """RFC 1123 section 2.1: a host name never has dotted-decimal form (the TLD is alphabetic).

    A typo in an IPv4 address must be reported, not stored as a hostname.
    """
    with bad("address"):
        endpoint(address=value)


@pytest.mark.parametrize(
    ("given", "canonical"),
    [
        ("gw.example:15443", "gw.example:15443"),
        ("GW.Example:1", "gw.example:1"),
        ("10.0.0.1:65535", "10.0.0.1:65535"),
        ("[2001:DB8::1]:443", "[2001:db8::1]:443"),
        ("[::1]:80", "[::1]:80"),
    ],
)
def test_host_port(given: str, canonical: str) -> None:
    assert Gateway("east", (given,)).addresses == (canonical,)
    assert cluster(gateway_addresses=[given]).gateway_addresses == (canonical,)


@pytest.mark.parametrize(
    "value",
    [
        "gw.example",
        ":80",
        "gw.example:",
        "gw.example:0",
        "gw.example:65536",
        "gw.example:http",
        "gw.example:-1",
        "::1:443",
        "2001:db8::1:443",
        "[::1]",
        "[::1]443",
        "[::1]:",
        "[10.0.0.1]:443",
        "[gw.example]:443",
        "bad_host:80",
        "gw.example:\u0661",  # ARABIC-INDIC DIGIT ONE: str.isdigit() but not a port
        "gw.example:\u00b2",  # SUPERSCRIPT TWO
        "gw.example:" + "9" * 5000,
        "",
        5,
    ],
)
def test_host_port_rejected_naming_the_index(value: Any) -> None:
    with bad("addresses[1]"):
        Gateway("east", ("gw.ok:1", value))
    with bad("gateway_addresses[0]"):
        cluster(gateway_addresses=(value,))


def test_gateway_locality_and_trust_domain_are_optional_but_validated() -> None:
    # A record stored before the fields existed still decodes, as "unknown".
    old = {"cluster": "east", "addresses": ["gw:1"], "modes": ["terminating"], "healthy": None}
    for decoded in (Gateway.from_dict(old), Gateway.from_stored(old)):
        assert (decoded.region, decoded.zone, decoded.trust_domain) == ("", "", "")
    full = Gateway("east", ("gw:1",), region="us-east", zone="us-east-1a", trust_domain="e.test")
    assert Gateway.from_dict(full.to_dict()) == full
    with bad("region"):
        Gateway("east", ("gw:1",), region="not a label")
    with bad("zone"):
        Gateway("east", ("gw:1",), zone="-z")
    with bad("zone"):
        Gateway("east", ("gw:1",), zone=None)  # type: ignore[arg-type]
    with bad("trust_domain"):
        Gateway("east", ("gw:1",), trust_domain="Upper.Case")
    with bad("trust_domain"):
        Gateway("east", ("gw:1",), trust_domain=5)  # type: ignore[arg-type]


def test_gateway_needs_addresses_and_modes() -> None:
    with bad("addresses"):
        Gateway("east", ())
    with bad("modes"):
        Gateway("east", ("gw:1",), modes=())
    with bad("modes[0]"):
        Gateway("east", ("gw:1",), modes=("mirror",))
    with bad("healthy"):
        Gateway("east", ("gw:1",), healthy="yes")  # type: ignore[arg-type]


# ========================================================================= records


def test_link_rules() -> None:
    with bad("b"):
        Link("east", "east")
    with bad("mode"):
        Link("east", "west", mode="mirror")
    with bad("bidirectional"):
        Link("east", "west", bidirectional="yes")  # type: ignore[arg-type]
    one_way = Link("east", "west", bidirectional=False)
    assert one_way.imports("east", "west") and not one_way.imports("west", "east")
    both = Link("east", "west")
    assert both.imports("west", "east") and both.key == "east/west"
    assert Link("a", "b", namespaces=("z", "a", "z")).namespaces == ("a", "z")
    cond = Condition("Ready", "True", "Up", "", NOW)
    with bad("conditions"):
        Link("a", "b", conditions=(cond, cond))
    assert Link("a", "b", conditions=(cond,)).condition("Ready") == cond
    with bad("credential_expiry"):
        Link("a", "b", credential_expiry=datetime(2026, 1, 1))


def test_conditions() -> None:
    with bad("status"):
        Condition("Ready", "Maybe", "Up", "", NOW)
    with bad("reason"):
        Condition("Ready", "True", "", "", NOW)
    with bad("reason"):
        Condition("Ready", "True", "1up", "", NOW)
    with bad("type"):
        Condition("", "True", "Up", "", NOW)
    with bad("type"):
        Condition(5, "True", "Up", "", NOW)  # type: ignore[arg-type]
    with bad("reason"):
        Condition("Ready", "True", 5, "", NOW)  # type: ignore[arg-type]
    with bad("message"):
        Condition("Ready", "True", "Up", None, NOW)  # type: ignore[arg-type]
    with bad("last_transition_time"):
        Condition("Ready", "True", "Up", "", "yesterday")  # type: ignore[arg-type]
    shifted = Condition("Ready", "True", "Up", "", "2026-01-02T05:04:05+02:00")  # type: ignore[arg-type]
    assert shifted.last_transition_time == NOW
    assert shifted.last_transition_time.tzinfo == UTC


def test_endpoint_and_export_fields() -> None:
    ep = endpoint()
    assert ep.key == "shop/cart/east/10.0.0.1"
    assert ep.key.startswith(endpoint_prefix("shop", "cart", "east"))
    assert endpoint_prefix("shop", "cart") == "shop/cart/"
    for weight in (-1, 1_000_001, True, 1.5, "1"):
        with bad("weight"):
            endpoint(weight=weight)
    with bad("ready"):
        endpoint(ready="yes")
    with bad("created"):
        export(created=datetime(2026, 1, 1))
    with bad("created"):
        export(created="not a time")
    with bad("scope[1]"):
        export(scope=("west", "West"))
    assert export(scope=("b", "a", "b")).scope == ("a", "b")
    assert export().key == "shop/cart/east"


def test_trust_domain_record() -> None:
    with bad("roots_pem"):
        TrustDomain("a.local", ())
    with bad("roots_pem[0]"):
        TrustDomain("a.local", ("not pem",))
    for field in ("sequence", "refresh_hint_seconds"):
        for value in (-1, True, 1.0, "1"):
            with bad(field):
                TrustDomain("a.local", (PEM,), **{field: value})


# ===================================================================== dict form


@pytest.mark.parametrize("record", SAMPLES, ids=lambda r: type(r).__name__)
def test_to_dict_from_dict_round_trip(record: Record) -> None:
    cls = type(record)
    data = record.to_dict()
    assert cls.from_dict(data) == record
    assert cls.from_dict(json.loads(json.dumps(data))) == record
    assert cls.from_dict(data).to_dict() == data
    assert cls.from_stored(json.loads(json.dumps(data))) == record
    assert KIND_BY_NAME[cls.KIND] is cls


@pytest.mark.parametrize("record", SAMPLES, ids=lambda r: type(r).__name__)
def test_from_dict_names_unknown_and_missing_fields(record: Record) -> None:
    cls = type(record)
    name = cls.__name__
    data = record.to_dict()
    with pytest.raises(ValidationError, match=rf"^{name}\.surprise: unknown field"):
        cls.from_dict({**data, "surprise": 1})
    for key in data:
        rest = {k: v for k, v in data.items() if k != key}
        try:
            cls.from_dict(rest)  # the field has a default
        except ValidationError as exc:
            assert exc.field == f"{name}.{key}", exc
            assert "required" in exc.message
    for garbage in (None, [], "x", 5):
        with bad(name):
            cls.from_dict(garbage)


def test_from_dict_nested_errors_name_the_field() -> None:
    data = SAMPLES[1].to_dict()
    data["conditions"][0]["status"] = "Maybe"
    with bad("status"):
        Link.from_dict(data)
    data = endpoint().to_dict()
    data["ports"] = [{"port": 80, "bogus": 1}]
    with bad("Port.bogus"):
        Endpoint.from_dict(data)


# ===================================================================== properties

label = st.from_regex(r"\A[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\Z")
label1035 = st.from_regex(r"\A[a-z]([-a-z0-9]{0,61}[a-z0-9])?\Z")
label_value = st.from_regex(r"\A[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?\Z")
tld = st.from_regex(r"\A[a-z]([-a-z0-9]{0,8}[a-z0-9])?\Z")
dns_name = st.builds(
    lambda labels, top: ".".join([*labels, top]),
    st.lists(st.from_regex(r"\A[a-z0-9]([-a-z0-9]{0,10}[a-z0-9])?\Z"), max_size=3),
    tld,
)
ip = st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)).map(str)
address = st.one_of(ip, dns_name)
port_number = st.integers(1, 65535)
ip4 = st.ip_addresses(v=4).map(str)
host_port = st.one_of(
    st.builds(
        lambda h, p: f"{h}:{p}", st.one_of(st.ip_addresses(v=4).map(str), dns_name), port_number
    ),
    st.builds(lambda h, p: f"[{h}]:{p}", st.ip_addresses(v=6).map(str), port_number),
)
trust_domain_name = st.from_regex(r"\A[a-z0-9._-]{1,40}\Z")
aware_time = st.datetimes(
    min_value=datetime(1970, 1, 1),
    max_value=datetime(2200, 1, 1),
    timezones=st.builds(
        lambda m: timezone(timedelta(minutes=m)), st.integers(-14 * 60 + 1, 14 * 60 - 1)
    ),
)
ports = st.lists(
    st.builds(
        Port,
        port=port_number,
        protocol=st.sampled_from(["TCP", "UDP", "SCTP"]),
        name=st.one_of(st.just(""), label),
        app_protocol=st.sampled_from(["", "http", "grpc", "kubernetes.io/h2c"]),
    ),
    min_size=1,
    max_size=4,
    unique_by=lambda p: (p.port, p.protocol),
)
label_key = st.one_of(label_value, st.builds(lambda d, n: f"{d}/{n}", dns_name, label_value))
clusters = st.builds(
    Cluster,
    name=label,
    region=label_value,
    zone=label_value,
    trust_domain=trust_domain_name,
    network=label_value,
    gateway_addresses=st.lists(host_port, max_size=3).map(tuple),
    source=st.sampled_from(["kubernetes", "static"]),
    labels=st.dictionaries(label_key, st.one_of(st.just(""), label_value), max_size=4),
)
conditions = st.lists(
    st.builds(
        Condition,
        type=st.sampled_from(["Ready", "GatewayReachable", "CredentialsValid", "Synced"]),
        status=st.sampled_from(["True", "False", "Unknown"]),
        reason=st.from_regex(r"\A[A-Z][A-Za-z]{0,20}\Z"),
        message=st.text(max_size=40),
        last_transition_time=aware_time,
    ),
    max_size=4,
    unique_by=lambda c: c.type,
).map(tuple)
links = st.builds(
    Link,
    a=st.just("east"),
    b=label.filter(lambda n: n != "east"),
    bidirectional=st.booleans(),
    mode=st.sampled_from(["terminating", "passthrough"]),
    namespaces=st.lists(label, max_size=4).map(tuple),
    conditions=conditions,
    credential_expiry=st.one_of(st.none(), aware_time),
)
exports = st.builds(
    ServiceExport,
    cluster=label,
    namespace=label,
    name=label1035,
    created=aware_time,
    ports=ports.map(tuple),
    scope=st.lists(label, max_size=3).map(tuple),
)
endpoints = st.builds(
    Endpoint,
    cluster=label,
    namespace=label,
    service=label1035,
    address=address,
    ports=ports.map(tuple),
    zone=label_value,
    ready=st.booleans(),
    weight=st.integers(0, 1_000_000),
)
gateways = st.builds(
    Gateway,
    cluster=label,
    addresses=st.lists(host_port, min_size=1, max_size=3).map(tuple),
    modes=st.lists(st.sampled_from(["passthrough", "terminating"]), min_size=1, max_size=2).map(
        tuple
    ),
    healthy=st.one_of(st.none(), st.booleans()),
)
trust_domains = st.builds(
    TrustDomain,
    name=trust_domain_name,
    roots_pem=st.lists(st.just(PEM), min_size=1, max_size=3).map(tuple),
    sequence=st.integers(0, 2**40),
    refresh_hint_seconds=st.integers(0, 10**6),
)
records = st.one_of(clusters, links, exports, endpoints, gateways, trust_domains)

PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(records)
def test_property_round_trip(record: Record) -> None:
    cls = type(record)
    data = record.to_dict()
    wire = json.loads(json.dumps(data))
    assert cls.from_dict(wire) == record
    assert cls.from_dict(wire).to_dict() == data
    assert cls.from_stored(wire) == record
    assert hash(record.key) is not None and record.key


json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True),
    st.text(max_size=20),
    st.sampled_from(
        [
            "",
            "0001-01-01T00:00:00+01:00",
            "9999-12-31T23:59:59-01:00",
            "2026-01-01",
            "gw.example:\u00b2",
            "gw.example:\u0661",
            "[::1]:99999",
            "-----BEGIN CERTIFICATE-----",
            "Ready",
            "True",
        ]
    ),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def mangled(draw: st.DrawFn) -> tuple[type[Record], Any]:
    """A valid record's dict with a field replaced, removed, added or nested garbage."""
    record = draw(records)
    cls = type(record)
    data: Any = record.to_dict()
    how = draw(st.sampled_from(["replace", "remove", "add", "nested", "whole"]))
    keys = sorted(data)
    if how == "replace":
        data[draw(st.sampled_from(keys))] = draw(json_values)
    elif how == "remove":
        del data[draw(st.sampled_from(keys))]
    elif how == "add":
        data[draw(st.text(max_size=8))] = draw(json_values)
    elif how == "nested":
        lists = [k for k in keys if isinstance(data[k], list) and data[k]]
        if lists:
            k = draw(st.sampled_from(lists))
            i = draw(st.integers(0, len(data[k]) - 1))
            if isinstance(data[k][i], dict) and data[k][i]:
                sub = draw(st.sampled_from(sorted(data[k][i])))
                data[k][i][sub] = draw(json_values)
            else:
                data[k][i] = draw(json_values)
    else:
        data = draw(json_values)
    return cls, data


def _condition(**kw: Any) -> dict[str, Any]:
    base = {
        "type": "Ready",
        "status": "True",
        "reason": "Up",
        "message": "",
        "last_transition_time": T,
    }
    return {**base, **kw}


def _link(*conds: dict[str, Any]) -> dict[str, Any]:
    return {"a": "east", "b": "west", "conditions": list(conds)}


@PROPERTY
@given(mangled())
@example((Link, _link(_condition(reason=5))))
@example((Link, _link(_condition(type={"k": 1}))))
@example((Link, _link(_condition(type=5))))
@example((Link, _link(_condition(last_transition_time="0001-01-01T00:00:00+01:00"))))
@example((ServiceExport, {**export().to_dict(), "created": "9999-12-31T23:59:59-01:00"}))
@example((Gateway, {"cluster": "east", "addresses": ["gw.example:\u00b2"]}))
@example((Gateway, {"cluster": "east", "addresses": ["gw.example:" + "9" * 5000]}))
@example((Endpoint, {**endpoint().to_dict(), "ports": [{"port": 80, "app_protocol": 5}]}))
def test_property_garbage_only_raises_validation_error(case: tuple[type[Record], Any]) -> None:
    cls, data = case
    try:
        record = cls.from_dict(data)
    except ValidationError as exc:
        assert exc.field and isinstance(exc.field, str)
        return
    # accepted: then it is a proper record whose dict form is JSON and round-trips
    wire = json.loads(json.dumps(record.to_dict()))
    assert cls.from_dict(wire) == record
    assert type(record) in RECORD_KINDS


def test_store_fast_path_rebuilds_nested_times_and_conditions() -> None:
    """`from_stored` (no validation) must give back exactly the record that was stored."""
    from federation.model import Condition, Link

    link = Link(
        "east",
        "west",
        conditions=(Condition("Ready", "True", "LinkReady", "ok", NOW),),
        credential_expiry=NOW,
    )
    rebuilt = Link.from_stored(json.loads(json.dumps(link.to_dict())))
    assert rebuilt == link
    assert isinstance(rebuilt.conditions[0].last_transition_time, datetime)
