"""The pure sources: Kubernetes objects and the static YAML file -> meshfed records."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from discovery_sync.errors import SourceError
from discovery_sync.sources.kube import NamespaceFilter, translate
from discovery_sync.sources.static import load_static
from federation.model import Port, ServiceKey

NOW = datetime(2026, 3, 1, tzinfo=UTC)


def service(
    ns: str,
    name: str,
    *,
    labels: dict[str, str] | None = None,
    ports: list[dict[str, Any]] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    return {
        "metadata": {
            "namespace": ns,
            "name": name,
            "labels": labels or {},
            "creationTimestamp": "2026-01-02T03:04:05Z",
        },
        "spec": {
            "ports": ports
            if ports is not None
            else [{"name": "http", "port": 80, "protocol": "TCP"}],
            **spec,
        },
    }


def export(ns: str, name: str, created: str = "2026-02-01T00:00:00Z") -> dict[str, Any]:
    return {"metadata": {"namespace": ns, "name": name, "creationTimestamp": created}}


def slice_(
    ns: str, svc: str, name: str, eps: list[dict[str, Any]], address_type: str = "IPv4"
) -> dict[str, Any]:
    return {
        "metadata": {"namespace": ns, "name": name, "labels": {"kubernetes.io/service-name": svc}},
        "addressType": address_type,
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": eps,
    }


def run(
    services: list[Any],
    slices: list[Any] = (),
    exports: list[Any] = (),  # type: ignore[assignment]
    **kw: Any,
):  # type: ignore[no-untyped-def]
    return translate(services, slices, exports, cluster="east", default_zone="z0", now=NOW, **kw)


def test_exported_by_serviceexport_or_compat_labels() -> None:
    out = run(
        [
            service("a", "one"),
            service("a", "two", labels={"mirror.linkerd.io/exported": "true"}),
            service("a", "three", labels={"meshfed.io/exported": "true"}),
            service("a", "four"),
            service("a", "five", labels={"mirror.linkerd.io/exported": "false"}),
        ],
        exports=[export("a", "one")],
    )
    assert sorted(k.name for k in out.services) == ["one", "three", "two"]
    one = out.services[ServiceKey("a", "one")]
    assert one.export.created == datetime(2026, 2, 1, tzinfo=UTC)  # the ServiceExport's age
    assert one.export.ports == (Port(80, "TCP", "http"),)
    two = out.services[ServiceKey("a", "two")]
    assert two.export.created == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert out.validity[("a", "one")].reason == "Valid"


def test_endpoints_ready_only_when_conditions_ready_and_zone_from_endpoint() -> None:
    eps = [
        {"addresses": ["10.0.0.1"], "conditions": {"ready": True}, "zone": "z1"},
        {"addresses": ["10.0.0.2"], "conditions": {"ready": False}, "zone": "z1"},
        {"addresses": ["10.0.0.3"], "conditions": {}},
        {"addresses": ["10.0.0.4"], "conditions": {"ready": True, "terminating": False}},
    ]
    out = run([service("a", "one")], [slice_("a", "one", "one-x", eps)], [export("a", "one")])
    got = {e.address: (e.ready, e.zone) for e in out.services[ServiceKey("a", "one")].endpoints}
    assert got == {
        "10.0.0.1": (True, "z1"),
        "10.0.0.2": (False, "z1"),
        "10.0.0.3": (False, "z0"),
        "10.0.0.4": (True, "z0"),
    }
    one = out.services[ServiceKey("a", "one")].endpoints[0]
    assert one.ports == (Port(8080, "TCP", "http"),)


def test_fqdn_slices_are_skipped_and_duplicates_merge_ready_wins() -> None:
    s1 = slice_("a", "one", "s1", [{"addresses": ["10.0.0.1"], "conditions": {"ready": False}}])
    s2 = slice_("a", "one", "s2", [{"addresses": ["10.0.0.1"], "conditions": {"ready": True}}])
    s3 = slice_("a", "one", "s3", [{"addresses": ["x.example.com"]}], address_type="FQDN")
    out = run([service("a", "one")], [s1, s2, s3], [export("a", "one")])
    eps = out.services[ServiceKey("a", "one")].endpoints
    assert [(e.address, e.ready) for e in eps] == [("10.0.0.1", True)]


def test_namespace_filter() -> None:
    svcs = [service("a", "one"), service("b", "one"), service("kube-system", "one")]
    exps = [export("a", "one"), export("b", "one"), export("kube-system", "one")]
    out = run(svcs, exports=exps, namespaces=NamespaceFilter(exclude=frozenset({"kube-system"})))
    assert sorted(k.namespace for k in out.services) == ["a", "b"]
    out = run(svcs, exports=exps, namespaces=NamespaceFilter(include=frozenset({"b"})))
    assert [k.namespace for k in out.services] == ["b"]


def test_validity_conditions() -> None:
    out = run(
        [service("a", "ext", type="ExternalName")],
        exports=[export("a", "ext"), export("a", "ghost")],
    )
    assert out.services == {}
    assert out.validity[("a", "ext")].reason == "InvalidServiceType"
    assert out.validity[("a", "ghost")].reason == "NoService"
    assert out.validity[("a", "ghost")].status == "False"


def test_headless_is_carried() -> None:
    out = run([service("a", "db", clusterIP="None")], exports=[export("a", "db")])
    assert out.services[ServiceKey("a", "db")].headless


def test_a_bad_object_is_reported_and_skipped_not_fatal() -> None:
    bad = service("a", "bad", ports=[{"name": "http", "port": 70000}])
    out = run([bad, service("a", "good")], exports=[export("a", "bad"), export("a", "good")])
    assert list(out.services) == [ServiceKey("a", "good")]
    assert out.problems == ("Service a/bad: spec.ports[0].port: 70000 is outside 1-65535",)
    assert out.validity[("a", "bad")].status == "False"
    bad_slice = slice_("a", "good", "s", [{"addresses": ["not an ip"]}])
    out = run([service("a", "good")], [bad_slice], [export("a", "good")])
    assert "EndpointSlice s: endpoints[0].addresses[0].address" in out.problems[0]


# --- static file --------------------------------------------------------------

DEMO = """
services:
  - {namespace: demo, name: echo, ports: [{name: http, port: 8080, protocol: TCP}],
     endpoints: [{address: 127.0.0.1, port: 9000, zone: zone-a, ready: true}]}
"""


def static(text: str) -> dict[ServiceKey, Any]:
    return load_static(text, cluster="east", default_zone="z0", now=NOW)


def test_static_issue_example() -> None:
    out = static(DEMO)
    echo = out[ServiceKey("demo", "echo")]
    assert echo.export.ports == (Port(8080, "TCP", "http"),)
    (ep,) = echo.endpoints
    assert (ep.address, ep.ports, ep.zone, ep.ready) == (
        "127.0.0.1",
        (Port(9000, "TCP", "http"),),
        "zone-a",
        True,
    )


def test_static_created_is_stable_across_rereads() -> None:
    first = static(DEMO)[ServiceKey("demo", "echo")].export.created
    later = load_static(
        DEMO,
        cluster="east",
        default_zone="z0",
        now=datetime(2027, 1, 1, tzinfo=UTC),
        first_seen={ServiceKey("demo", "echo"): first},
    )
    assert later[ServiceKey("demo", "echo")].export.created == first


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("services: [{namespace: demo}]", "services[0].name"),
        ("services: [{namespace: Demo, name: x}]", "services[0].namespace"),
        ("services: [{namespace: demo, name: x, prots: []}]", "services[0].prots"),
        ("services: [{namespace: demo, name: x, ports: [{port: 0}]}]", "services[0].ports[0].port"),
        (
            "services: [{namespace: demo, name: x, ports: [{port: 80, protocol: HTTP}]}]",
            "services[0].ports[0].protocol",
        ),
        (
            "services: [{namespace: demo, name: x, ports: [{port: 80}], endpoints: [{port: 1}]}]",
            "services[0].endpoints[0].address",
        ),
        (
            "services: [{namespace: demo, name: x, ports: [{port: 80}],"
            " endpoints: [{address: 300.1.1.1, port: 1}]}]",
            "services[0].endpoints[0].address",
        ),
        (
            "services: [{namespace: demo, name: x, ports: [{port: 80}],"
            " endpoints: [{address: 10.0.0.1, port: 1, ready: yes-ish}]}]",
            "services[0].endpoints[0].ready",
        ),
        (
            "services: [{namespace: demo, name: x,"
            " ports: [{name: a, port: 80}, {name: b, port: 81}],"
            " endpoints: [{address: 10.0.0.1, port: 1}]}]",
            "services[0].endpoints[0].port",
        ),
        (
            "services: [{namespace: demo, name: x, ports: [{name: a, port: 80}],"
            " endpoints: [{address: 10.0.0.1, ports: [{name: b, port: 1}]}]}]",
            "services[0].endpoints[0].ports[0].name",
        ),
        ("services: {}", "services"),
        ("services: [{namespace: demo, name: x}, {namespace: demo, name: x}]", "services[1]"),
        ("services: [\n  {namespace: demo,\n", "line 3, column 1"),
        ("- 1", "(top level)"),
    ],
)
def test_static_errors_name_the_field(text: str, field: str) -> None:
    with pytest.raises(SourceError) as err:
        static(text)
    assert err.value.field == field, str(err.value)


_label = st.from_regex(r"[a-z][a-z0-9]{0,8}", fullmatch=True)
_port = st.integers(1, 65535)


@st.composite
def static_docs(draw: st.DrawFn) -> dict[str, Any]:
    services = []
    names = draw(st.lists(st.tuples(_label, _label), unique=True, max_size=5))
    for ns, name in names:
        port = draw(_port)
        eps = draw(
            st.lists(
                st.tuples(st.integers(0, 2**32 - 1), _port, st.booleans()),
                unique_by=lambda t: t[0],
                max_size=5,
            )
        )
        services.append(
            {
                "namespace": ns,
                "name": name,
                "ports": [{"name": "p", "port": port, "protocol": "TCP"}],
                "endpoints": [
                    {
                        "address": ".".join(str(a >> s & 255) for s in (24, 16, 8, 0)),
                        "port": p,
                        "ready": r,
                        "zone": "z",
                    }
                    for a, p, r in eps
                ],
            }
        )
    return {"services": services}


@given(static_docs())
@settings(max_examples=60, deadline=None)
def test_static_round_trips_what_it_was_given(doc: dict[str, Any]) -> None:
    out = static(yaml.safe_dump(doc))
    assert len(out) == len(doc["services"])
    for raw in doc["services"]:
        local = out[ServiceKey(raw["namespace"], raw["name"])]
        assert len(local.endpoints) == len(raw["endpoints"])
        assert sum(e.ready for e in local.endpoints) == sum(e["ready"] for e in raw["endpoints"])


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=12,
)


@given(st.dictionaries(st.sampled_from(["services", "x"]), _json, max_size=2))
@settings(max_examples=200, deadline=None)
def test_static_never_raises_anything_but_source_error(doc: dict[str, Any]) -> None:
    with contextlib.suppress(SourceError):
        static(yaml.safe_dump(doc))


@given(
    st.lists(
        st.dictionaries(
            st.sampled_from(["metadata", "spec", "addressType", "ports", "endpoints"]),
            _json,
            max_size=5,
        ),
        max_size=4,
    )
)
@settings(max_examples=200, deadline=None)
def test_translate_never_raises_on_garbage(objs: list[dict[str, Any]]) -> None:
    for o in objs:
        o.setdefault(
            "metadata",
            {"namespace": "a", "name": "one", "labels": {"kubernetes.io/service-name": "one"}},
        )
    out = run(objs, objs, [export("a", "one")])
    assert isinstance(out.problems, tuple)
