"""SNI formats, route table lookup and route-file errors (all pure)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eastwest_gateway.errors import ConfigError, SniFormatError
from eastwest_gateway.naming import ServiceTarget, istio_sni, meshfed_sni, parse_sni
from eastwest_gateway.routefile import (
    EgressMode,
    HostPort,
    Mode,
    load_route_file,
    parse_host_port,
    parse_route_document,
)
from eastwest_gateway.routing import RouteTable

svc = st.from_regex(r"[a-z]([a-z0-9-]{0,20}[a-z0-9])?", fullmatch=True)
ns = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?", fullmatch=True)
ports = st.integers(1, 65535)


def test_istio_sni() -> None:
    t = parse_sni("outbound_.8443_._.echo.demo.svc.cluster.local")
    assert t == ServiceTarget(
        host="echo.demo.svc.cluster.local",
        port=8443,
        subset=None,
        flavor="istio",
        service="echo",
        namespace="demo",
    )
    assert t.canonical_host == "echo.demo.svc.clusterset.local"
    assert t.label == "demo/echo"


def test_istio_sni_with_subset_and_foreign_host() -> None:
    t = parse_sni("outbound_.443_.v1_.db.example.com")
    assert (t.host, t.port, t.subset, t.service) == ("db.example.com", 443, "v1", None)
    assert t.canonical_host == "db.example.com"


def test_meshfed_sni_with_and_without_port() -> None:
    assert parse_sni("8443.echo.demo.svc.clusterset.local").port == 8443
    t = parse_sni("Echo.Demo.svc.clusterset.local")
    assert (t.service, t.namespace, t.port, t.flavor) == ("echo", "demo", None, "meshfed")


@pytest.mark.parametrize(
    "sni",
    [
        "echo.example.com",
        "outbound_.x_._.echo.demo.svc.cluster.local",
        "outbound_.0_._.echo.demo.svc.cluster.local",
        "outbound_.70000_._.h",
        "outbound_.80_._.",
        "outbound_.80_.Bad!_.h",
        "outbound_.80",
        "1.2.echo.demo.svc.clusterset.local",
        "9echo.demo.svc.clusterset.local",
        "echo.-demo.svc.clusterset.local",
        "99999.echo.demo.svc.clusterset.local",
        "svc.clusterset.local",
    ],
)
def test_bad_sni(sni: str) -> None:
    with pytest.raises(SniFormatError):
        parse_sni(sni)


@given(svc, ns, st.none() | ports)
def test_meshfed_round_trip(service: str, namespace: str, port: int | None) -> None:
    t = parse_sni(meshfed_sni(service, namespace, port))
    assert (t.service, t.namespace, t.port) == (service, namespace, port)


@given(svc, ns, ports, st.none() | ns)
def test_istio_round_trip(service: str, namespace: str, port: int, subset: str | None) -> None:
    t = parse_sni(istio_sni(f"{service}.{namespace}.svc.cluster.local", port, subset))
    assert (t.service, t.namespace, t.port, t.subset) == (service, namespace, port, subset)


def doc(*routes: dict[str, object], **top: object) -> dict[str, object]:
    return {"routes": list(routes), **top}


TLS = {"cert": "gw.pem", "key": "gw.key", "ca": "ca.pem"}
ALLOW = ["spiffe://east.meshfed/meshfed/gateway/east"]
CLUSTER = {"name": "w", "region": "r", "zone": "z", "gateways": ["h:1"]}


def table(*routes: dict[str, object]) -> RouteTable:
    return RouteTable.build(parse_route_document(doc(*routes, tls=TLS), Path("/etc")).routes)


def test_issue_example_parses(tmp_path: Path) -> None:
    path = tmp_path / "routes.yaml"
    path.write_text(
        """
tls: {cert: gw.pem, key: gw.key, ca: bundle.pem}
routes:
  - {sni: "outbound_.8443_._.echo.demo.svc.cluster.local", backend: "127.0.0.1:9000",
     mode: passthrough}
  - {sni: "echo.demo.svc.clusterset.local", backend: "127.0.0.1:9001", mode: terminate,
     allow: ["spiffe://east.meshfed/meshfed/gateway/east"]}
"""
    )
    rf = load_route_file(path)
    assert rf.tls is not None and rf.tls.ca == tmp_path / "bundle.pem"
    first, second = rf.routes
    assert (first.mode, first.backend) == (Mode.PASSTHROUGH, HostPort("127.0.0.1", 9000))
    assert second.allow == tuple(ALLOW) and second.mode is Mode.TERMINATE
    assert first.service == "demo/echo"


def test_lookup_exact_then_by_service() -> None:
    t = table(
        {"sni": "outbound_.8443_._.echo.demo.svc.cluster.local", "backend": "127.0.0.1:1"},
        {"sni": "echo.demo.svc.clusterset.local", "backend": "127.0.0.1:2"},
        {"sni": "outbound_.80_.v2_.web.demo.svc.cluster.local", "backend": "127.0.0.1:3"},
        {"sni": "legacy.example", "backend": "127.0.0.1:4"},
    )

    def port(sni: str | None) -> int | None:
        r = t.lookup(sni)
        return None if r is None else r.backend.port

    assert port("OUTBOUND_.8443_._.echo.demo.svc.cluster.local") == 1
    assert port("8443.echo.demo.svc.clusterset.local") == 1  # same service, other format
    assert port("outbound_.8443_.v1_.echo.demo.svc.cluster.local") == 1  # any subset
    assert port("9090.echo.demo.svc.clusterset.local") == 2  # port wildcard route
    assert port("outbound_.9_._.echo.demo.svc.cluster.local") == 2
    assert port("outbound_.80_.v2_.web.demo.svc.cluster.local") == 3
    assert port("outbound_.80_.v1_.web.demo.svc.cluster.local") is None  # other subset
    assert port("legacy.example") == 4
    assert port("other.demo.svc.clusterset.local") is None
    assert port("garbage") is None
    assert port(None) is None


def test_conflicting_routes_rejected() -> None:
    with pytest.raises(ConfigError, match=r"routes\[1\].sni.*same service"):
        table(
            {"sni": "outbound_.80_._.echo.demo.svc.cluster.local", "backend": "127.0.0.1:1"},
            {"sni": "80.echo.demo.svc.clusterset.local", "backend": "127.0.0.1:2"},
        )
    with pytest.raises(ConfigError, match=r"routes\[1\].sni.*repeats"):
        table({"sni": "a.b", "backend": "h:1"}, {"sni": "A.B", "backend": "h:2"})


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (None, r"routes: the file is empty"),
        ([], r"expected a mapping"),
        ({"routes": [], "extra": 1}, r"^extra: unknown field"),
        ({}, r"^routes: expected a list"),
        (doc({"sni": "a.b"}), r"routes\[0\].backend: expected HOST:PORT, got None"),
        (doc({"sni": "a.b", "backend": "h"}), r"routes\[0\].backend: expected HOST:PORT"),
        (doc({"sni": "a.b", "backend": "h:0"}), r"routes\[0\].backend: port '0'"),
        (doc({"sni": "a.b", "backend": "h:x"}), r"routes\[0\].backend: port 'x'"),
        (doc({"sni": "", "backend": "h:1"}), r"routes\[0\].sni: expected a non-empty string"),
        (doc({"sni": "a", "backend": "h:1", "mode": "x"}), r"routes\[0\].mode: 'x' is not one"),
        (doc({"sni": "a", "backend": "h:1", "bogus": 1}), r"routes\[0\].bogus: unknown field"),
        (
            doc({"sni": "a", "backend": "h:1", "mode": "terminate", "allow": ALLOW}),
            r"routes\[0\].mode: terminate needs the top-level tls",
        ),
        (
            doc({"sni": "a", "backend": "h:1", "mode": "terminate"}, tls=TLS),
            r"routes\[0\].allow: terminate needs",
        ),
        (
            doc({"sni": "a", "backend": "h:1", "mode": "terminate", "allow": ["x"]}, tls=TLS),
            r"routes\[0\].allow\[0\]: expected a spiffe:// ID",
        ),
        (
            doc({"sni": "a", "backend": "h:1", "allow": ALLOW}),
            r"routes\[0\].allow: only terminate",
        ),
        (doc(tls={"cert": "a", "key": "b"}), r"tls.ca: expected a non-empty string"),
        (
            doc(
                egress=[
                    {
                        "listen": "127.0.0.1:1",
                        "sni": "a",
                        "mode": "passthrough",
                        "clusters": [CLUSTER],
                    }
                ]
            ),
            r"locality: required",
        ),
        (
            doc(
                locality={"region": "r", "zone": "z"},
                egress=[
                    {
                        "listen": "127.0.0.1:1",
                        "sni": "a",
                        "mode": "passthrough",
                        "clusters": [
                            {
                                "name": "w",
                                "region": "r",
                                "zone": "z",
                                "gateways": ["h:1"],
                                "weight": -1,
                            }
                        ],
                    }
                ],
            ),
            r"egress\[0\].clusters\[0\].weight: expected an integer >= 0, got -1",
        ),
        (
            doc(
                locality={"region": "r", "zone": "z"},
                egress=[{"listen": "127.0.0.1:1", "sni": "a", "clusters": []}],
            ),
            r"egress\[0\].mode: originate needs the top-level tls",
        ),
    ],
)
def test_route_file_errors_name_the_field(document: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_route_document(document, Path("/"))


def test_egress_parses() -> None:
    rf = parse_route_document(
        doc(
            tls=TLS,
            locality={"region": "r1", "zone": "z1"},
            egress=[
                {
                    "listen": "[::1]:15001",
                    "sni": "echo.demo.svc.clusterset.local",
                    "clusters": [
                        {"name": "w", "region": "r1", "zone": "z2", "gateways": ["gw.west:15443"]},
                        {
                            "name": "e",
                            "region": "r2",
                            "zone": "z",
                            "gateways": ["10.0.0.1:15443"],
                            "priority": 1,
                            "weight": 5,
                            "ready_endpoints": 0,
                        },
                    ],
                }
            ],
        ),
        Path("/"),
    )
    (eg,) = rf.egress
    assert eg.listen == HostPort("::1", 15001) and str(eg.listen) == "[::1]:15001"
    assert eg.mode is EgressMode.ORIGINATE and eg.service == "demo/echo"
    assert [c.name for c in eg.clusters] == ["w", "e"]
    assert eg.clusters[1].weight == 5 and eg.clusters[1].ready_endpoints == 0


def test_load_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_route_file(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("routes: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_route_file(bad)


@pytest.mark.parametrize("text", ["", ":1", "h:", "[::1", "::1:80", "[zz]:80", "h:65536"])
def test_bad_host_port(text: str) -> None:
    with pytest.raises(ConfigError, match=r"^x:"):
        parse_host_port(text, "x")
