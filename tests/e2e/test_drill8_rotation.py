"""Drill 8 of issue 9: the federation root rotated, every stage, under steady traffic.

Clusters `a`, `b`, `c` as in tests/e2e/test_drills.py (own federation, registry on
SQLite). While `a` sends 20 requests/s to demo/echo (served by `b`) and holds one
connection through its egress listener that it opened before the rotation, the
operator runs the runbook of docs/trust.md through the REST API:

1. prepare: the next root joins every bundle; gateways and agents trust it from
   the Watch, and the gateways report the roots they hold (ReportHealth), so
   propagation completes without waiting 3 refresh hints;
2. activate (not forced): the registry signs under the next root and says so in
   the bundles; every gateway and agent renews its SVID at once;
3. retire, forced once every gateway and agent shows (metrics `*_svid_info`) an
   SVID under the next root: the old root leaves every bundle.

Asserted: no request failed; the connection opened before the rotation still
answers after retire; every gateway and agent ends on the new root without a
restart or a new join token; `meshfed check` passes after retire.
"""

from __future__ import annotations

import socket
import time
import urllib.request
from typing import Any

import pytest

from eastwest_gateway.snapshot import CA
from federation.client.rotation import fingerprints
from tests.e2e.conftest import record
from tests.e2e.harness import (
    ADDRESSES,
    LOCALITY,
    SERVICE_PORT,
    Federation,
    describe,
    wait_until,
)
from tests.e2e.netns import Net

pytestmark = pytest.mark.slow

AGENT_ADMIN_PORT = 9474  # `meshfed agent --admin-address` default (docs/discovery.md)
ROTATION = "/api/v1/trust/rotation"
RENEW_TIMEOUT = 30.0  # activate -> every SVID under the next root (Watch + one renewal)


class HeldConnection:
    """One TCP connection from inside `a` through its egress listener, kept open."""

    def __init__(self, net: Net, node: str) -> None:
        self.thread = net.thread(node)
        self.sock: socket.socket = self.thread.call(
            socket.create_connection, (ADDRESSES[node], SERVICE_PORT), 10
        )
        self.rounds = 0

    def ping(self) -> str:
        """One line out, one line back; returns the serving cluster."""
        self.rounds += 1
        line = f"held {self.rounds}"

        def go() -> str:
            self.sock.sendall(line.encode() + b"\n")
            reply = b""
            while not reply.endswith(b"\n"):
                chunk = self.sock.recv(4096)
                if not chunk:
                    raise ConnectionError("closed by the gateway")
                reply += chunk
            cluster, _, echoed = reply.decode().strip().partition(" ")
            assert echoed == line, reply
            return cluster

        return self.thread.call(go)

    def close(self) -> None:
        self.thread.call(self.sock.close)


def _metric_lines(fed: Federation, node: str, port: int) -> list[str]:
    url = f"http://{ADDRESSES[node]}:{port}/metrics"

    def go() -> str:
        with urllib.request.urlopen(url, timeout=3) as r:
            return str(r.read().decode())

    return [ln for ln in fed.net.thread(node).call(go).splitlines() if not ln.startswith("#")]


def svid_roots(fed: Federation) -> dict[str, str]:
    """component -> SHA-256 of the root its SVID chains to (from its metrics)."""
    out: dict[str, str] = {}
    for cluster in LOCALITY:
        for component, port, name in (
            ("gateway", 15021, "meshfed_gateway_svid_info{"),
            ("agent", AGENT_ADMIN_PORT, "meshfed_agent_svid_info{"),
        ):
            for line in _metric_lines(fed, cluster, port):
                if line.startswith(name) and line.endswith(" 1.0"):
                    out[f"{component}-{cluster}"] = line.split('root_sha256="')[1].split('"')[0]
    return out


def step(fed: Federation, action: str, force: bool = False) -> dict[str, Any]:
    result: dict[str, Any] = fed.expect("POST", ROTATION, 200, {"action": action, "force": force})
    return result


def status(fed: Federation) -> dict[str, Any]:
    result: dict[str, Any] = fed.expect("GET", ROTATION, 200)
    return result


def test_drill8_root_rotation_under_steady_traffic(fed: Federation, net: Net) -> None:
    old_root = status(fed)["current_root"]["fingerprint_sha256"]
    components = {f"{c}-{x}" for x in LOCALITY for c in ("gateway", "agent")}
    before = wait_until(
        "every gateway and agent reports its SVID root",
        lambda: set(svid_roots(fed)) == components,
        30,
    )
    assert set(svid_roots(fed).values()) == {old_root}, before
    held = HeldConnection(net, "a")
    try:
        assert held.ping() == "b"
        with fed.load("a") as load:
            time.sleep(2.0)
            started = time.monotonic()
            prepared = step(fed, "prepare")
            new_root = prepared["rotation"]["next_root"]["fingerprint_sha256"]
            held.ping()
            propagated_s = wait_until(
                "every cluster's gateway reports both roots",
                lambda: status(fed)["propagation"]["complete"],
                60,
            )
            propagation = status(fed)["propagation"]
            held.ping()
            activated_at = time.monotonic()
            step(fed, "activate")  # not forced: the gateways' reports complete propagation
            renewed_s = wait_until(
                "every gateway and agent renewed under the next root",
                lambda: svid_roots(fed) == dict.fromkeys(components, new_root),
                RENEW_TIMEOUT,
            )
            held.ping()
            time.sleep(3.0)  # traffic on the new SVIDs, old root still trusted
            retired = step(fed, "retire", force=True)  # SVID lifetime not waited: all renewed
            retired_at = time.monotonic()
            time.sleep(5.0)  # new connections verified with the new root only
            ended = time.monotonic()
        served_by_held = held.ping()
    finally:
        held.close()
    samples = load.samples
    failed = [s for s in samples if s.served_by is None]
    assert not failed, f"{len(failed)} of {len(samples)} requests failed: " + ", ".join(
        sorted({s.error for s in failed})[:5]
    )
    assert served_by_held == "b", "the connection opened before the rotation was dropped"
    after_retire = [s for s in samples if s.sent >= retired_at]
    assert after_retire and {s.served_by for s in after_retire} == {"b"}, describe(after_retire)
    assert propagation["reason"] == "every cluster reported", propagation
    final = status(fed)
    assert final["stage"] == "stable" and final["current_root"]["fingerprint_sha256"] == new_root
    assert final["current_root"]["fingerprint_sha256"] != old_root
    assert retired["rotation"]["next_root"] is None
    for bundle in final["bundles"]:
        assert bundle["roots"] == [new_root], bundle
    assert svid_roots(fed) == dict.fromkeys(components, new_root)
    for cluster in LOCALITY:  # what each gateway verifies peers with: the new root only
        assert fingerprints((fed.home(cluster) / "gateway" / CA).read_bytes()) == (new_root,)
    code, out = fed.check()
    assert code == 0, out
    for proc in fed.procs.values():
        assert proc.running, f"{proc.name} exited during the rotation"
    record(
        "drill 8 root rotation",
        **describe(samples),
        propagation_complete_after_prepare_s=round(propagated_s, 2),
        all_svids_on_new_root_after_activate_s=round(renewed_s, 2),
        rotation_total_s=round(retired_at - started, 2),
        requests_after_retire=len(after_retire),
        held_connection_rounds=held.rounds,
        observed_s=round(ended - started, 2),
        activated_to_retired_s=round(retired_at - activated_at, 2),
    )
