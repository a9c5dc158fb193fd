"""The pure DNS answer builder: names, types, response codes, ordering, health."""

from __future__ import annotations

import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rdatatype
import pytest
from discovery_views import CALLER, clusterset, ep, headless, view

from discovery_sync.dns.answer import render, respond
from discovery_sync.dns.zone import ZoneData, compile_zone
from discovery_sync.types import Locality


def ask(zone: ZoneData, name: str, rdtype: str = "A") -> dns.message.Message:
    response = respond(dns.message.make_query(name, rdtype), zone)
    assert response is not None
    return response


def addrs(response: dns.message.Message) -> list[str]:
    return [rd.to_text() for rrset in response.answer for rd in rrset]


ZONE = compile_zone(view(clusterset(), headless()), CALLER)


def test_clusterset_ip_service_answers_its_ip_authoritatively() -> None:
    r = ask(ZONE, "echo.demo.svc.clusterset.local")
    assert r.rcode() == dns.rcode.NOERROR and r.flags & dns.flags.AA
    assert addrs(r) == ["198.18.0.10"]
    assert r.answer[0].ttl == 5


def test_headless_answers_ready_endpoints_nearest_first() -> None:
    r = ask(ZONE, "db.demo.svc.clusterset.local")
    # same zone (east), same region (east2), then the rest (west); 10.1.0.2 not ready
    assert addrs(r) == ["10.1.0.1", "10.2.0.1", "10.3.0.1"]


def test_nearest_first_depends_on_the_caller() -> None:
    zone = compile_zone(view(headless()), Locality("us-west", "us-west-1a"))
    assert addrs(ask(zone, "db.demo.svc.clusterset.local"))[0] == "10.3.0.1"


def test_a_cluster_with_a_down_gateway_is_left_out() -> None:
    zone = compile_zone(view(headless(), east=False), CALLER)
    assert addrs(ask(zone, "db.demo.svc.clusterset.local")) == ["10.2.0.1", "10.3.0.1"]
    r = ask(zone, "10-1-0-1.east.db.demo.svc.clusterset.local")
    assert r.rcode() == dns.rcode.NXDOMAIN


def test_clusterset_service_with_no_serving_cluster_is_nodata() -> None:
    zone = compile_zone(view(clusterset(), west=False), CALLER)
    r = ask(zone, "echo.demo.svc.clusterset.local")
    assert r.rcode() == dns.rcode.NOERROR and r.answer == []
    assert r.authority[0].rdtype == dns.rdatatype.SOA


def test_no_ready_endpoints_leaves_the_cluster_out() -> None:
    svc = headless(
        eps=(
            ep("east", "demo", "db", "10.1.0.9", "us-east-1a", ready=False),
            ep("west", "demo", "db", "10.3.0.9", "us-west-1a"),
        )
    )
    zone = compile_zone(view(svc), CALLER)
    assert addrs(ask(zone, "db.demo.svc.clusterset.local")) == ["10.3.0.9"]


def test_per_endpoint_names() -> None:
    r = ask(ZONE, "10-2-0-1.east2.db.demo.svc.clusterset.local")
    assert addrs(r) == ["10.2.0.1"]
    # the cluster level is an empty non-terminal: NODATA, not NXDOMAIN (RFC 8020)
    r = ask(ZONE, "east2.db.demo.svc.clusterset.local")
    assert r.rcode() == dns.rcode.NOERROR and r.answer == []


def test_srv_for_named_ports_with_glue() -> None:
    r = ask(ZONE, "_http._tcp.echo.demo.svc.clusterset.local", "SRV")
    assert addrs(r) == ["0 100 8080 echo.demo.svc.clusterset.local."]
    assert [rd.to_text() for rs in r.additional for rd in rs] == ["198.18.0.10"]
    r = ask(ZONE, "_http._tcp.db.demo.svc.clusterset.local", "SRV")
    assert addrs(r) == [
        "0 1 9000 10-1-0-1.east.db.demo.svc.clusterset.local.",
        "1 1 9000 10-2-0-1.east2.db.demo.svc.clusterset.local.",
        "2 1 9000 10-3-0-1.west.db.demo.svc.clusterset.local.",
    ]
    assert sorted(rd.to_text() for rs in r.additional for rd in rs) == [
        "10.1.0.1",
        "10.2.0.1",
        "10.3.0.1",
    ]


def test_dns_version_txt() -> None:
    assert addrs(ask(ZONE, "dns-version.clusterset.local", "TXT")) == ['"1.0.0"']


def test_ipv6_answers_aaaa() -> None:
    svc = clusterset(ips=("fd00::10",))
    zone = compile_zone(view(svc), CALLER)
    assert addrs(ask(zone, "echo.demo.svc.clusterset.local", "AAAA")) == ["fd00::10"]
    r = ask(zone, "echo.demo.svc.clusterset.local", "A")
    assert r.rcode() == dns.rcode.NOERROR and r.answer == []


@pytest.mark.parametrize(
    ("name", "rdtype", "rcode", "answers"),
    [
        ("nope.demo.svc.clusterset.local", "A", dns.rcode.NXDOMAIN, 0),
        ("echo.other.svc.clusterset.local", "A", dns.rcode.NXDOMAIN, 0),
        ("echo.demo.svc.clusterset.local", "MX", dns.rcode.NOERROR, 0),
        ("echo.demo.svc.clusterset.local", "TXT", dns.rcode.NOERROR, 0),
        ("demo.svc.clusterset.local", "A", dns.rcode.NOERROR, 0),
        ("svc.clusterset.local", "A", dns.rcode.NOERROR, 0),
        ("clusterset.local", "SOA", dns.rcode.NOERROR, 1),
        ("clusterset.local", "NS", dns.rcode.NOERROR, 1),
        ("example.com", "A", dns.rcode.REFUSED, 0),
        ("cluster.local", "A", dns.rcode.REFUSED, 0),
        ("clusterset.local", "AXFR", dns.rcode.REFUSED, 0),
        ("ECHO.Demo.SVC.ClusterSet.Local", "A", dns.rcode.NOERROR, 1),
    ],
)
def test_response_codes(name: str, rdtype: str, rcode: int, answers: int) -> None:
    r = ask(ZONE, name, rdtype)
    assert r.rcode() == rcode
    assert len(r.answer) == answers
    if rcode == dns.rcode.NXDOMAIN or (rcode == dns.rcode.NOERROR and not answers):
        assert r.authority and r.authority[0].rdtype == dns.rdatatype.SOA


def test_other_class_and_opcode() -> None:
    q = dns.message.make_query("echo.demo.svc.clusterset.local", "A", "CH")
    assert respond(q, ZONE).rcode() == dns.rcode.REFUSED  # type: ignore[union-attr]
    q = dns.message.make_query("echo.demo.svc.clusterset.local", "A")
    q.set_opcode(dns.opcode.NOTIFY)
    assert respond(q, ZONE).rcode() == dns.rcode.NOTIMP  # type: ignore[union-attr]


def test_edns_version_above_zero_is_badvers() -> None:
    q = dns.message.make_query("echo.demo.svc.clusterset.local", "A", use_edns=1)
    r = respond(q, ZONE)
    assert r is not None and r.rcode() == dns.rcode.BADVERS


def test_responses_are_never_answered() -> None:
    q = dns.message.make_query("echo.demo.svc.clusterset.local", "A")
    q.flags |= dns.flags.QR
    assert respond(q, ZONE) is None


def test_oversized_udp_answer_is_truncated() -> None:
    eps = tuple(
        ep("west", "demo", "big", f"10.9.{i // 250}.{i % 250 + 1}", "us-west-1a")
        for i in range(200)
    )
    zone = compile_zone(view(headless("big", eps=eps)), CALLER)
    q = dns.message.make_query("big.demo.svc.clusterset.local", "A")
    r = respond(q, zone)
    assert r is not None
    wire = render(r, 512)
    assert len(wire) <= 512
    parsed = dns.message.from_wire(wire)
    assert parsed.flags & dns.flags.TC and parsed.answer == []
    full = dns.message.from_wire(render(respond(q, zone), 65535))  # type: ignore[arg-type]
    assert len(full.answer[0]) == 200
