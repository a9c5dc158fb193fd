"""Multi-cluster drills 1, 2, 3, 4 and 6 of issue 9 on one federation (registry on SQLite).

Clusters `a` (us-east/zone-1, the caller), `b` (us-east/zone-2) and `c`
(eu-west/zone-1) are network namespaces (tests/e2e/netns.py); `b` and `c` export
demo/echo; `a` calls it through its gateway's egress listener at 20 requests/s, one
request per new connection. Each drill restores what it broke, so they share one
federation and run in file order. Drill 5 (registry down) is left out until the
agent notices a dead export stream while idle (see docs/operations.md). Figures are
printed per drill and at the end of the run (conftest.pytest_terminal_summary);
docs/operations.md explains them.
"""

from __future__ import annotations

import os
import time
from collections import defaultdict

import pytest

from tests.e2e.conftest import record
from tests.e2e.harness import (
    GATEWAY_PORT,
    MARKER,
    SERVICE,
    Capture,
    Federation,
    describe,
    shift_figures,
    tls_records,
    trust_domain,
    wait_until,
)
from tests.e2e.netns import Net

pytestmark = pytest.mark.slow

BAD = ("\u00d7", "\u203c")  # `meshfed check` marks: failed, cannot be judged yet
RETURN_TIMEOUT = 60.0  # traffic back at b after a repair (ejection backoff is 30 s)


def assert_no_failures(samples: list, what: str) -> None:  # type: ignore[type-arg]
    failed = [s for s in samples if s.served_by is None]
    assert not failed, f"{what}: {len(failed)} of {len(samples)} requests failed: " + ", ".join(
        sorted({s.error for s in failed})[:5]
    )


def test_drill1_cross_cluster_mtls_on_the_wire(fed: Federation, net: Net) -> None:
    """a -> b over the east-west port: only TLS records on the veth, no plaintext."""
    with Capture(net.ns("a"), "to-b") as cap, fed.load("a") as load:
        time.sleep(3.0)
    samples = load.samples
    assert_no_failures(samples, "drill 1")
    assert {s.served_by for s in samples} == {"b"}

    segments = [s for s in cap.tcp_segments() if s.payload]
    assert segments, "no TCP payload captured on a's veth to b"
    strays = [s for s in segments if GATEWAY_PORT not in (s.src[1], s.dst[1])]
    assert not strays, f"payload on a port other than {GATEWAY_PORT}: {strays[:3]}"
    raw = b"".join(cap.frames)
    assert MARKER.encode() not in raw, "request payload seen in plaintext on the wire"
    assert b"ping " not in raw
    # The SNI (plaintext in the ClientHello by design) names the service: SNI routing.
    assert f"{SERVICE}.demo.svc.clusterset.local".encode() in raw

    flows: dict[tuple[object, object], bytes] = defaultdict(bytes)
    for s in segments:
        flows[(s.src, s.dst)] += s.payload
    record_types: set[int] = set()
    for flow, stream in flows.items():
        types, rest = tls_records(stream)
        assert not rest, f"flow {flow}: {len(rest)} bytes that are not TLS records: {rest[:40]!r}"
        record_types |= set(types)
    assert 22 in record_types and 23 in record_types  # handshakes and encrypted data

    metrics = fed.metrics("b")
    ingress_from_a = sum(
        v
        for k, v in metrics.items()
        if k.startswith("meshfed_gateway_connections_total{")
        and 'direction="ingress"' in k
        and trust_domain("a") in k
    )
    assert ingress_from_a >= len(samples)
    record(
        "drill 1 mTLS on the wire",
        **describe(samples),
        frames=len(cap.frames),
        tls_flows=len(flows),
        tls_record_types=sorted(record_types),
        b_ingress_connections_from_a=ingress_from_a,
    )


def test_drill2_locality_prefers_same_region(fed: Federation) -> None:
    """From a (us-east/zone-1): b (us-east/zone-2) serves, not c (eu-west)."""
    clusters = fed.egress_clusters("a")
    assert set(clusters) == {"b", "c"}
    assert clusters["b"]["locality"] == {"region": "us-east", "zone": "zone-2"}
    assert clusters["c"]["locality"] == {"region": "eu-west", "zone": "zone-1"}
    with fed.load("a") as load:
        time.sleep(3.0)
    samples = load.samples
    assert_no_failures(samples, "drill 2")
    assert {s.served_by for s in samples} == {"b"}, describe(samples)
    record("drill 2 locality", **describe(samples))


def test_drill3_gateway_killed_under_load(fed: Federation) -> None:
    """SIGKILL b's gateway under steady load: new connections go to c, none fails."""
    with fed.load("a") as load:
        time.sleep(2.0)
        killed_at = time.monotonic()
        fed.procs["gateway-b"].kill()
        load.wait_served("c", killed_at, 10)
        time.sleep(3.0)
        down = shift_figures(load.samples, killed_at, "c")
        # b's peers notice: the probe turns DOWN (3 failures, 2 s apart), the link's
        # GatewayReachable condition goes False and `meshfed check` says so.
        wait_until("a's probe of b DOWN", lambda: _peer_state(fed, "a", "b") == "down", 20)
        reported_s = wait_until(
            "link a<->b GatewayReachable False",
            lambda: _condition(fed.link("a", "b"), "GatewayReachable") == "False",
            10,
        )
        seen_down = fed.link("a", "b")
        code, check_out = fed.check()
        fed.start_gateway("b")  # same state dir: its saved SVID, no new token
        restored_at = time.monotonic()
        back_s = load.wait_served("b", restored_at, RETURN_TIMEOUT)
        time.sleep(2.0)
    samples = load.samples
    assert_no_failures(samples, "drill 3")
    assert down["shift_s"] is not None
    after_kill = [s for s in samples if killed_at + 0.5 <= s.sent < restored_at]
    assert after_kill and {s.served_by for s in after_kill} == {"c"}
    assert _condition(seen_down, "GatewayReachable") == "False"
    assert code == 1 and "gateway of b alive" in check_out, check_out
    record("drill 3 gateway killed", **describe(samples), **down,
           return_to_b_s=round(back_s, 2), check_exit=code,
           condition_after_probe_down_s=round(reported_s, 2),
           condition=_message(seen_down, "GatewayReachable"),
           check_lines=[ln for ln in check_out.splitlines() if ln.startswith(BAD)])  # fmt: skip


def _peer_state(fed: Federation, cluster: str, peer: str) -> str:
    for key, value in fed.metrics(cluster).items():
        if key.startswith("meshfed_gateway_peer_health{") and f'cluster="{peer}"' in key and value:
            return key.split('state="')[1].split('"')[0]
    return ""


def _condition(link: dict, kind: str) -> str:  # type: ignore[type-arg]
    for c in link["conditions"]:
        if c["type"] == kind:
            return str(c["status"])
    return ""


def _message(link: dict, kind: str) -> str:  # type: ignore[type-arg]
    for c in link["conditions"]:
        if c["type"] == kind:
            return f"{c['status']} {c['reason']}: {c['message']}"
    return ""


def test_drill4_partition_a_b(fed: Federation, net: Net) -> None:
    """Cut the a<->b link under load: traffic moves to c, none fails; healed, back to b."""
    with fed.load("a") as load:
        time.sleep(2.0)
        cut_at = time.monotonic()
        net.cut("a", "b")
        cut_done = time.monotonic()  # `ip link set down` has returned: the link is dark
        try:
            load.wait_served("c", cut_at, 15)
            wait_until(
                "link a<->b GatewayReachable False",
                lambda: _condition(fed.link("a", "b"), "GatewayReachable") == "False",
                20,
            )
            time.sleep(2.0)
            during = fed.link("a", "b")
            m = fed.metrics("a")
        finally:
            net.heal("a", "b")
        healed_at = time.monotonic()
        back_s = load.wait_served("b", healed_at, RETURN_TIMEOUT)
        time.sleep(2.0)
    samples = load.samples
    # A connection already relaying through a->b when the link goes dark cannot be
    # saved by any TCP proxy (its bytes are in the blackhole): the requests in flight
    # at the cut (sent before the cut command returned, still open when it started) are
    # counted, not asserted. Every request sent after the cut succeeds.
    in_flight = [s for s in samples if s.sent < cut_done and s.done > cut_at]
    lost_in_flight = [s for s in in_flight if s.served_by is None]
    assert_no_failures([s for s in samples if s not in lost_in_flight], "drill 4")
    moved = shift_figures(samples, cut_at, "c", healed_at)
    assert moved["shift_s"] is not None and moved["settled_s"] is not None
    partitioned = [s for s in samples if cut_at + moved["settled_s"] <= s.sent < healed_at]
    assert partitioned and {s.served_by for s in partitioned} == {"c"}
    assert _condition(during, "GatewayReachable") == "False"
    ejections = sum(
        v for k, v in m.items()
        if k.startswith("meshfed_gateway_outlier_ejections_total{") and 'cluster="b"' in k
    )  # fmt: skip
    connect_failures = sum(
        v for k, v in m.items()
        if k.startswith("meshfed_gateway_upstream_connect_failures_total{") and 'cluster="b"' in k
    )  # fmt: skip
    record("drill 4 partition a<->b", **describe(samples), **moved,
           return_to_b_after_heal_s=round(back_s, 2), a_ejections_of_b=ejections,
           a_connect_failures_to_b=connect_failures, in_flight_at_cut=len(in_flight),
           lost_in_flight_at_cut=len(lost_in_flight),
           condition=_message(during, "GatewayReachable"))  # fmt: skip


def test_drill6_agent_killed_endpoints_expire(fed: Federation) -> None:
    """SIGKILL b's agent: b's endpoints expire with its lease, traffic leaves b; restarted,
    they come back and so does the traffic."""
    with fed.load("a") as load:
        time.sleep(2.0)
        killed_at = time.monotonic()
        fed.procs["agent-b"].kill()
        expired_s = wait_until(
            "registry drops b's endpoints", lambda: "b" not in fed.endpoint_clusters(), 60
        )
        egress_s = fed.wait_egress("a", {"c"}, 20) + expired_s
        load.wait_served("c", killed_at, 5)
        time.sleep(2.0)
        moved = shift_figures(load.samples, killed_at, "c", time.monotonic())
        restarted_at = time.monotonic()
        fed.start_agent("b")
        back_s = load.wait_served("b", restarted_at, RETURN_TIMEOUT)
        wait_until("registry has b's endpoints", lambda: "b" in fed.endpoint_clusters(), 10)
        time.sleep(2.0)
    samples = load.samples
    assert_no_failures(samples, "drill 6")
    # expired_s is polled (REST, 0.1 s apart): leave a 1 s margin
    before_expiry = [s for s in samples if s.sent < killed_at + expired_s - 1.0]
    assert {s.served_by for s in before_expiry} == {"b"}, "b served until its lease expired"
    record("drill 6 agent killed", **describe(samples),
           endpoints_expired_after_s=round(expired_s, 2),
           a_egress_dropped_b_after_s=round(egress_s, 2),
           traffic_to_c_after_kill_s=moved["shift_s"],
           traffic_back_to_b_after_restart_s=round(back_s, 2))  # fmt: skip


# issue 9: "registry down for 30 s" (E2E_OUTAGE shortens it for local runs)
REGISTRY_OUTAGE = float(os.environ.get("E2E_OUTAGE", "30"))


def test_drill5_registry_down(fed: Federation) -> None:
    """Kill the registry for 30 s: traffic keeps flowing on the last snapshot (still
    at b); a change made meanwhile reaches the registry and a's gateway after restart."""
    static_c = fed.home("c") / "services.yaml"
    original = static_c.read_text()
    with fed.load("a") as load:
        time.sleep(2.0)
        down_at = time.monotonic()
        fed.procs["registry"].kill()
        time.sleep(2.0)
        # c's agent sees a new endpoint weight while the registry is away
        static_c.write_text(original.replace("ready: true}", "ready: true, weight: 3}"))
        time.sleep(max(0.0, REGISTRY_OUTAGE - (time.monotonic() - down_at)))
        up_at = time.monotonic()
        fed.start_registry()
        ready_s = time.monotonic() - up_at
        caught_up_s = wait_until(
            "c's new weight reaches a's gateway",
            lambda: fed.egress_clusters("a").get("c", {}).get("weight") == 3,
            60,
        )
        time.sleep(8.0)
        egress_after, registry_after = set(fed.egress_clusters("a")), fed.endpoint_clusters()
    samples = load.samples
    print("drill5 evidence", describe(samples), egress_after, registry_after, ready_s, caught_up_s)
    assert egress_after == {"b", "c"}
    assert registry_after == {"b", "c"}
    static_c.write_text(original)
    assert_no_failures(samples, "drill 5")
    during = [s for s in samples if down_at <= s.sent < up_at]
    # while the registry is away, a keeps serving its last snapshot: b, the nearest.
    # After the restart b's stream lease may have expired before its agent re-reports
    # (EXPORT_RETRY_MAX), so a may briefly use c: allowed, as long as nothing fails.
    assert during and {s.served_by for s in during} == {"b"}, describe(during)
    record(
        "drill 5 registry down",
        **describe(samples),
        outage_s=REGISTRY_OUTAGE,
        requests_during_outage=len(during),
        registry_ready_after_restart_s=round(ready_s, 2),
        change_made_during_outage_at_a_after_restart_s=round(ready_s + caught_up_s, 2),
    )
