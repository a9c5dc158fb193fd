"""The pure import merge: visibility through links, scope, namespaces, port conflicts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from federation.model import Endpoint, Link, Port, ServiceExport, ServiceKey
from federation.model.imports import imports_for, merge_ports, visible

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def export(cluster: str, name: str = "echo", ns: str = "demo", **kw: object) -> ServiceExport:
    kw.setdefault("ports", (Port(8080, name="http"),))
    kw.setdefault("created", T0)
    return ServiceExport(cluster=cluster, namespace=ns, name=name, **kw)  # type: ignore[arg-type]


def ep(cluster: str, addr: str, name: str = "echo") -> Endpoint:
    return Endpoint(cluster, "demo", name, addr, (Port(8080),), "zone-1")


def test_bidirectional_link_shows_each_side_the_others_exports() -> None:
    links = [Link("a", "b")]
    exports = [export("a"), export("b", name="web")]
    assert list(imports_for("a", links, exports)) == [ServiceKey("demo", "web")]
    assert list(imports_for("b", links, exports)) == [ServiceKey("demo", "echo")]


def test_one_way_link_imports_only_towards_a() -> None:
    links = [Link("a", "b", bidirectional=False)]
    exports = [export("a", name="from-a"), export("b", name="from-b")]
    assert [k.name for k in imports_for("a", links, exports)] == ["from-b"]
    assert imports_for("b", links, exports) == {}


def test_unlinked_clusters_and_own_exports_are_not_imported() -> None:
    exports = [export("a"), export("c")]
    assert imports_for("a", [Link("a", "b")], exports) == {}


def test_scope_and_link_namespaces_filter() -> None:
    links = [Link("a", "b"), Link("a", "c", namespaces=("other",))]
    exports = [export("b", scope=("z",)), export("c")]
    assert imports_for("a", links, exports) == {}
    assert visible("a", export("b", scope=("a",)), links)


def test_union_of_clusters_ports_and_endpoints() -> None:
    links = [Link("a", "b"), Link("a", "c")]
    exports = [
        export("b", ports=(Port(8080, name="http"),)),
        export("c", ports=(Port(9090, name="grpc"),)),
    ]
    eps = [ep("b", "10.0.0.1"), ep("c", "10.0.1.1"), ep("c", "10.0.1.2"), ep("d", "10.9.9.9")]
    imp = imports_for("a", links, exports, eps)[ServiceKey("demo", "echo")]
    assert imp.clusters == ("b", "c")
    assert [p.port for p in imp.ports] == [8080, 9090]
    assert imp.conflicts == ()
    assert {c: len(e) for c, e in imp.endpoints_by_cluster().items()} == {"b": 1, "c": 2}


def test_port_conflict_oldest_export_wins_and_is_flagged() -> None:
    old = export("c", ports=(Port(8080, name="http"),), created=T0)
    new = export("b", ports=(Port(8080, name="web"),), created=T0 + timedelta(hours=1))
    ports, conflicts = merge_ports([new, old])
    assert ports == (Port(8080, name="http"),)
    assert len(conflicts) == 1
    assert "cluster b" in conflicts[0] and "cluster c (older export)" in conflicts[0]


clusters = st.sampled_from(["a", "b", "c", "d"])
ports = st.lists(
    st.builds(Port, st.integers(1, 65535), st.sampled_from(["TCP", "UDP"]), st.just("")),
    max_size=3,
    unique_by=lambda p: (p.port, p.protocol),
)
exports_st = st.lists(
    st.builds(
        export,
        clusters,
        st.sampled_from(["echo", "web"]),
        st.just("demo"),
        ports=ports.map(tuple),
        created=st.integers(0, 100).map(lambda h: T0 + timedelta(hours=h)),
        scope=st.lists(clusters, max_size=2).map(tuple),
    ),
    max_size=6,
    unique_by=lambda e: e.key,
)


@given(
    exports=exports_st,
    links=st.lists(st.tuples(clusters, clusters, st.booleans()), max_size=4),
    consumer=clusters,
)
def test_merge_is_order_independent_and_respects_visibility(
    exports: list[ServiceExport], links: list[tuple[str, str, bool]], consumer: str
) -> None:
    lks = [Link(a, b, bidi) for a, b, bidi in links if a != b]
    forward = imports_for(consumer, lks, exports)
    backward = imports_for(consumer, list(reversed(lks)), list(reversed(exports)))
    assert forward == backward
    for key, imp in forward.items():
        assert consumer not in imp.clusters
        for c in imp.clusters:
            assert any(lk.imports(consumer, c) for lk in lks)
        keys = [(p.port, p.protocol) for p in imp.ports]
        assert len(keys) == len(set(keys))
        assert key == imp.service
