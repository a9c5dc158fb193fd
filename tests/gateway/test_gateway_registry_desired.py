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
    parse_local_document,
)
from eastwest_gateway.errors import ConfigError
from eastwest_gateway.main import run
from eastwest_gateway.routefile import EgressMode, HostPort, Locality, TlsFiles
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
        (["--registry", "h:1", "--join-token", "t", "--trust-domain", "Bad!"], "--trust-domain"),
        (["--routes", "r.yaml", "--join-token", "t"], "--join-token"),
        (
            [
                *("--registry", "h:1", "--join-token", "t", "--trust-domain", "e"),
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
    argv = ["--cluster", "east", "--registry", "127.0.0.1:1", "--join-token", "t"]
    argv += ["--trust-domain", "east.test", "--registry-ca", str(tmp_path / "missing.pem")]
    assert run(argv) == 2
    assert "--registry-ca" in capsys.readouterr().err
