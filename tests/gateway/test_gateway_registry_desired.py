"""Registry mode's pure parts: view -> configuration, the snapshot format, the flags."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from eastwest_gateway.desired import (
    UNHEALTHY_PRIORITY,
    LocalConfig,
    candidate_locality,
    desired_config,
    endpoint_port,
    parse_local_document,
)
from eastwest_gateway.errors import ConfigError
from eastwest_gateway.main import run
from eastwest_gateway.routefile import EgressMode, HostPort, Locality, Mode, TlsFiles
from eastwest_gateway.routing import RouteTable
from eastwest_gateway.snapshot import trust_pem, view_from_doc, view_to_doc
from federation.client import Items, WatchView
from federation.model import Condition, Endpoint, Gateway, Link, Port, ServiceKey, TrustDomain
from federation.model.imports import ServiceImport

TLS = TlsFiles(Path("/s/svid.pem"), Path("/s/key.pem"), Path("/s/ca.pem"))
HERE = Locality("us-east", "us-east-1a")
LOCAL = LocalConfig("east", HERE, TLS)
ECHO = ServiceKey("demo", "echo")


def ep(cluster: str, address: str, zone: str, ready: bool = True, weight: int = 1) -> Endpoint:
    return Endpoint(cluster, "demo", "echo", address, (Port(8080),), zone, ready, weight)


def items(
    clusters: dict[str, str],  # cluster -> link mode
    endpoints: tuple[Endpoint, ...],
    *,
    ports: tuple[Port, ...] = (Port(8080),),
    healthy: dict[str, bool | None] | None = None,
    extra: dict[ServiceKey, ServiceImport] | None = None,
) -> Items:
    imp = ServiceImport("east", ECHO, ports, tuple(sorted(clusters)), (), endpoints)
    return Items(
        imports={ECHO: imp, **(extra or {})},
        links={f"east/{c}": Link("east", c, mode=m) for c, m in clusters.items()},
        gateways={
            c: Gateway(c, (f"{c}.gw.test:15443",), healthy=(healthy or {}).get(c)) for c in clusters
        },
    )


def test_one_originating_listener_per_imported_port_with_ranked_inputs() -> None:
    view = items(
        {"west": "terminating", "near": "terminating"},
        (
            ep("west", "10.0.0.1", "us-west-2a"),
            ep("west", "10.0.0.2", "us-west-2a", ready=False),
            ep("near", "10.0.1.1", "us-east-1a", weight=3),
        ),
        ports=(Port(8080), Port(9090, name="metrics")),
        healthy={"west": False},
    )
    desired = desired_config(view, LOCAL)
    rf = desired.route_file
    assert [(e.listen, e.sni, e.mode) for e in rf.egress] == [
        (HostPort("127.0.0.1", 8080), "8080.echo.demo.svc.clusterset.local", EgressMode.ORIGINATE),
        (HostPort("127.0.0.1", 9090), "9090.echo.demo.svc.clusterset.local", EgressMode.ORIGINATE),
    ]
    clusters = {c.name: c for c in rf.egress[0].clusters}
    assert clusters["near"].locality == HERE  # same zone: same region
    assert clusters["near"].weight == 3 and clusters["near"].priority == 0
    assert clusters["west"].locality == Locality("", "us-west-2a")
    assert clusters["west"].ready_endpoints == 1
    assert clusters["west"].priority == UNHEALTHY_PRIORITY  # registry: every prober failed
    assert clusters["west"].gateways == (HostPort("west.gw.test", 15443),)
    assert rf.tls == TLS and rf.locality == HERE and desired.notes == ()


def test_link_mode_picks_the_listener_mode() -> None:
    only_passthrough = desired_config(items({"west": "passthrough"}, ()), LOCAL)
    assert only_passthrough.route_file.egress[0].mode is EgressMode.PASSTHROUGH
    mixed = desired_config(items({"west": "passthrough", "north": "terminating"}, ()), LOCAL)
    (route,) = mixed.route_file.egress
    assert route.mode is EgressMode.ORIGINATE
    assert [c.name for c in route.clusters] == ["north"]
    assert any("west on passthrough links left out" in n for n in mixed.notes)


def test_offset_collisions_missing_gateways_and_non_tcp_are_noted() -> None:
    other = ServiceKey("demo", "aaa")
    extra = {other: ServiceImport("east", other, (Port(8080), Port(53, "UDP")), ("west",), (), ())}
    view = items({"west": "terminating"}, (), extra=extra)
    local = LocalConfig("east", HERE, TLS, egress_host="127.0.0.9", egress_port_offset=10000)
    desired = desired_config(view, local)
    # demo/aaa sorts first and keeps 18080; demo/echo's port 8080 collides.
    assert [(e.listen, e.sni) for e in desired.route_file.egress] == [
        (HostPort("127.0.0.9", 18080), "8080.aaa.demo.svc.clusterset.local")
    ]
    assert any("only TCP" in n for n in desired.notes)
    assert any("already the listener of demo/aaa port 8080" in n for n in desired.notes)

    no_gateway = Items(imports=view.imports, links=view.links)
    assert desired_config(no_gateway, LOCAL).route_file.egress == ()


def test_one_way_link_in_the_other_direction_gives_no_egress() -> None:
    view = items({"west": "terminating"}, ())
    one_way = Items(
        imports=view.imports,
        links={"west/east": Link("west", "east", bidirectional=False)},  # west imports east
        gateways=view.gateways,
    )
    desired = desired_config(one_way, LOCAL)
    assert desired.route_file.egress == ()
    assert any("no link through which east imports from west" in n for n in desired.notes)


def test_candidate_locality_prefers_ready_endpoints() -> None:
    eps = (ep("w", "10.0.0.1", "b", ready=False), ep("w", "10.0.0.2", "b", ready=False))
    assert candidate_locality((*eps, ep("w", "10.0.0.3", "a")), HERE).zone == "a"
    assert candidate_locality((), HERE) == Locality("", "")


def test_local_file_refuses_tls_and_egress(tmp_path: Path) -> None:
    doc = {
        "locality": {"region": "r", "zone": "z"},
        "routes": [
            {
                "sni": "echo.demo.svc.clusterset.local",
                "backend": "127.0.0.1:9000",
                "mode": "terminate",
                "allow": ["spiffe://west.test/meshfed/gateway/west"],
            }
        ],
    }
    routes, locality = parse_local_document(doc, tmp_path, TLS)
    assert locality == Locality("r", "z") and routes[0].backend == HostPort("127.0.0.1", 9000)
    with pytest.raises(ConfigError, match=r"^egress: unknown field"):
        parse_local_document({**doc, "egress": []}, tmp_path, TLS)
    with pytest.raises(ConfigError, match=r"routes\[0\].backend"):
        parse_local_document({"routes": [{"sni": "a.b", "backend": "x"}]}, tmp_path, TLS)


ROOT_PEM = (
    "-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n"  # only text is compared
)


def test_snapshot_round_trips_a_view() -> None:
    link = Link(
        "east",
        "west",
        conditions=(Condition("Ready", "True", "Probed", "ok", datetime(2026, 1, 1, tzinfo=UTC)),),
    )
    view = WatchView(
        42,
        Items(
            imports=items({"west": "terminating"}, (ep("west", "10.0.0.1", "z"),)).imports,
            links={link.key: link},
            gateways={"west": Gateway("west", ("127.0.0.1:15443",), healthy=True)},
            bundles={"west.test": TrustDomain("west.test", (ROOT_PEM,), 3)},
            exports=items({"west": "terminating"}, (ep("west", "10.0.0.2", "z"),)).imports,
        ),
    )
    assert view_from_doc(view_to_doc(view)) == view
    with pytest.raises(ConfigError):
        view_from_doc({"version": 99})
    pem = trust_pem(ROOT_PEM.encode(), view.items)
    assert pem.count(b"BEGIN CERTIFICATE") == 1  # deduplicated


@pytest.mark.parametrize(
    ("argv", "names"),
    [
        (["--routes", "r.yaml", "--registry", "127.0.0.1:9471"], "--registry"),
        (["--registry", "127.0.0.1:9471", "--trust-domain", "e.test"], "--join-token"),
        (["--registry", "nope"], "--registry"),
        (
            ["--registry", "h:1", "--join-token", "abcdef.s3cret", "--trust-domain", "Bad!"],
            "--trust-domain",
        ),
        (["--routes", "r.yaml", "--join-token", "abcdef.s3cret"], "--join-token"),
        (
            [
                *("--registry", "h:1", "--join-token", "abcdef.s3cret", "--trust-domain", "e"),
                *("--registry-ca", "c", "--region", "r"),
            ],
            "--region",
        ),
    ],
)
def test_flags_exit_2_naming_the_bad_value(
    argv: list[str], names: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["--cluster", "east", *argv]) == 2
    assert names in capsys.readouterr().err


def test_unreadable_registry_ca_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--cluster", "east", "--registry", "127.0.0.1:1", "--join-token", "abcdef.s3cret"]
    argv += ["--trust-domain", "east.test", "--registry-ca", str(tmp_path / "missing.pem")]
    assert run(argv) == 2
    assert "--registry-ca" in capsys.readouterr().err


# ------------------------------------------------------------------ ingress from the Watch

WEST_TD = "west.meshfed.test"
WEST_LOCAL = LocalConfig("west", Locality("us-west", "us-west-2a"), TLS)


def own_ep(address: str, *ports: Port, ready: bool = True) -> Endpoint:
    return Endpoint("west", "demo", "echo", address, ports or (Port(9000),), "us-west-2a", ready)


def west_view(
    links: tuple[Link, ...],
    endpoints: tuple[Endpoint, ...],
    *,
    ports: tuple[Port, ...] = (Port(8080),),
    trust_domains: dict[str, str] | None = None,
) -> Items:
    """west's view: its own export of demo/echo, links, peers' gateway records."""
    own = ServiceImport("west", ECHO, ports, ("west",), (), endpoints)
    peers = {x for link in links for x in (link.a, link.b)} - {"west"}
    tds = trust_domains if trust_domains is not None else {p: f"{p}.meshfed.test" for p in peers}
    return Items(
        exports={ECHO: own},
        links={link.key: link for link in links},
        gateways={
            p: Gateway(p, (f"{p}.gw.test:15443",), trust_domain=tds.get(p, "")) for p in peers
        },
    )


def test_ingress_terminates_own_exports_for_linked_importers_only() -> None:
    view = west_view(
        (
            Link("east", "west"),  # east imports west (both ways)
            Link("north", "west", bidirectional=False),  # north imports west
            Link("west", "south", bidirectional=False),  # only west imports south: no access
            Link("west", "shop", namespaces=("shop",)),  # not the demo namespace: no access
        ),
        (
            own_ep("10.1.0.5", Port(9000, name="http")),
            own_ep("10.1.0.6", Port(9000, name="http"), ready=False),
            own_ep("10.1.0.7", Port(9000, name="http")),
        ),
        ports=(Port(8080, name="http"), Port(53, "UDP", name="dns")),
    )
    desired = desired_config(view, WEST_LOCAL)
    (route,) = desired.route_file.routes
    assert route.sni == "8080.echo.demo.svc.clusterset.local"
    assert route.mode is Mode.TERMINATE
    assert route.allow == (
        "spiffe://east.meshfed.test/meshfed/gateway/east",
        "spiffe://north.meshfed.test/meshfed/gateway/north",
    )
    # Ready endpoints only, on the endpoint port that serves service port 8080.
    assert route.backends == (HostPort("10.1.0.5", 9000), HostPort("10.1.0.7", 9000))
    assert any("only TCP" in n for n in desired.notes)
    table = RouteTable.build(desired.route_file.routes)
    # Istio's name for the same service port reaches the same route.
    assert table.lookup("outbound_.8080_._.echo.demo.svc.cluster.local") is route
    assert table.lookup("9090.echo.demo.svc.clusterset.local") is None


def test_ingress_skips_unknown_trust_domains_and_not_ready_services() -> None:
    link = Link("east", "west")
    unknown_td = desired_config(
        west_view((link,), (own_ep("10.1.0.5"),), trust_domains={}), WEST_LOCAL
    )
    assert unknown_td.route_file.routes == ()
    assert any("east's gateway trust domain is unknown" in n for n in unknown_td.notes)
    nothing_ready = desired_config(
        west_view((link,), (own_ep("10.1.0.5", ready=False),)), WEST_LOCAL
    )
    assert nothing_ready.route_file.routes == ()
    assert any("no ready endpoint" in n for n in nothing_ready.notes)
    unlinked = desired_config(west_view((), (own_ep("10.1.0.5"),)), WEST_LOCAL)
    assert unlinked.route_file.routes == () and unlinked.notes == ()


def test_passthrough_importers_get_a_passthrough_route_unless_one_terminates() -> None:
    eps = (own_ep("10.1.0.5"),)
    only = desired_config(west_view((Link("east", "west", mode="passthrough"),), eps), WEST_LOCAL)
    (route,) = only.route_file.routes
    assert route.mode is Mode.PASSTHROUGH and route.allow == ()
    assert RouteTable.build((route,)).lookup("outbound_.8080_._.echo.demo.svc.cluster.local")
    mixed = desired_config(
        west_view((Link("east", "west", mode="passthrough"), Link("north", "west")), eps),
        WEST_LOCAL,
    )
    (route,) = mixed.route_file.routes
    assert route.mode is Mode.TERMINATE
    assert route.allow == ("spiffe://north.meshfed.test/meshfed/gateway/north",)
    assert any("east on passthrough links left out" in n for n in mixed.notes)


def test_endpoint_port_follows_the_service_port_name() -> None:
    http, admin = Port(8080, name="http"), Port(9090, name="admin")
    ep = own_ep("10.1.0.5", Port(18080, name="http"), Port(19090, name="admin"))
    assert endpoint_port(ep, http) == 18080 and endpoint_port(ep, admin) == 19090
    assert endpoint_port(own_ep("10.1.0.5", Port(7000)), Port(8080)) == 7000  # the only one
    two = own_ep("10.1.0.5", Port(8080), Port(8081))
    assert endpoint_port(two, Port(8080)) == 8080
    assert endpoint_port(two, Port(9999)) is None
    assert endpoint_port(own_ep("10.1.0.5", Port(53, "UDP")), Port(8080)) is None


def test_local_routes_override_derived_ones(tmp_path: Path) -> None:
    view = west_view((Link("east", "west"),), (own_ep("10.1.0.5"),), ports=(Port(8080), Port(8443)))
    doc = {
        "routes": [
            {"sni": "8443.echo.demo.svc.clusterset.local", "backend": "127.0.0.1:1"},
            {"sni": "extra.demo.svc.clusterset.local", "backend": "127.0.0.1:2"},
        ]
    }
    local_routes, _ = parse_local_document(doc, tmp_path, TLS)
    local = LocalConfig("west", WEST_LOCAL.locality, TLS, ingress=local_routes)
    routes = desired_config(view, local).route_file.routes
    assert [(r.sni, str(r.backend)) for r in routes] == [
        ("8443.echo.demo.svc.clusterset.local", "127.0.0.1:1"),
        ("extra.demo.svc.clusterset.local", "127.0.0.1:2"),
        ("8080.echo.demo.svc.clusterset.local", "10.1.0.5:9000"),
    ]
    wildcard, _ = parse_local_document(
        {"routes": [{"sni": "echo.demo.svc.clusterset.local", "backend": "127.0.0.1:3"}]},
        tmp_path,
        TLS,
    )
    local = LocalConfig("west", WEST_LOCAL.locality, TLS, ingress=wildcard)
    assert [r.sni for r in desired_config(view, local).route_file.routes] == [
        "echo.demo.svc.clusterset.local"
    ]


def test_egress_uses_the_gateway_records_locality_and_identity() -> None:
    view = items({"west": "terminating", "old": "terminating"}, (ep("old", "10.0.0.1", "zz"),))
    gateways = dict(view.gateways)
    gateways["west"] = Gateway(
        "west", ("west.gw.test:15443",), region="us-east", zone="us-east-1b", trust_domain="w.td"
    )
    view = Items(imports=view.imports, links=view.links, gateways=gateways)
    (route,) = desired_config(view, LOCAL).route_file.egress
    clusters = {c.name: c for c in route.clusters}
    assert clusters["west"].locality == Locality("us-east", "us-east-1b")  # same region, not zone
    assert clusters["west"].spiffe_id == "spiffe://w.td/meshfed/gateway/west"
    # A record without locality or trust domain (older registry): inferred, chain only.
    assert clusters["old"].locality == Locality("", "zz")
    assert clusters["old"].spiffe_id == ""


def test_replica_instance_name_is_the_host_name_or_nothing() -> None:
    from eastwest_gateway.registry_mode import instance_name

    assert instance_name("meshfed-gateway-7d9c-x2x.") == "meshfed-gateway-7d9c-x2x"
    assert instance_name("Build-Host.Example.COM") == "build-host.example.com"
    for bad in ("", "under_score", "-leading", "a" * 64, "x." * 130):
        assert instance_name(bad) == "", bad
