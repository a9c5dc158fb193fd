"""The agent's admin endpoint: the pure decisions over Snapshot data.

Readiness, liveness, leadership and the metrics, with no server and no agent;
the real endpoint is in test_discovery_admin_http.py.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from admin_support import parse
from prometheus_client import CollectorRegistry, generate_latest

from discovery_sync.admin import (
    Election,
    Snapshot,
    collect_metrics,
    leadership_problem,
    liveness,
    readiness,
)
from discovery_sync.main import admin_address

READY = Snapshot(joined=True, source_listed=True)
STANDBY = Election(
    lease="meshfed-system/meshfed-agent-east",
    identity="east-2",
    leading=False,
    holder="east-1",
    read=True,
    unchanged_for=1.5,
    stale_after=17.0,
)

# --- the pure decisions -----------------------------------------------------------------


def test_ready_only_when_joined_and_listed() -> None:
    assert readiness(READY) == []
    assert readiness(Snapshot()) == [
        "registry: not joined yet",
        "source: initial list of the static file not complete",
    ]
    assert readiness(replace(READY, joined=False)) == ["registry: not joined yet"]
    kube = Snapshot(joined=True, source="Kubernetes informers")
    assert readiness(kube) == ["source: initial list of the Kubernetes informers not complete"]


def test_a_stopped_task_fails_liveness_and_readiness() -> None:
    assert liveness(READY) == []
    dead = replace(READY, stopped=("follow",))
    assert liveness(dead) == ["loop: task 'follow' has ended"]
    assert readiness(dead) == ["loop: task 'follow' has ended"]
    assert liveness(Snapshot()) == []  # not joined yet is alive (the join retries)


def test_leader_and_healthy_standby_are_ready() -> None:
    assert leadership_problem(replace(STANDBY, leading=True, unchanged_for=99.0)) is None
    assert leadership_problem(STANDBY) is None  # the leader renews: the Lease changes
    free = replace(STANDBY, holder="", unchanged_for=0.5)  # about to take it
    assert leadership_problem(free) is None
    assert readiness(replace(READY, election=STANDBY)) == []


def test_standby_that_sees_no_live_leader_is_not_ready() -> None:
    unread = replace(STANDBY, read=False, holder="", unchanged_for=0.0)
    assert leadership_problem(unread) == "lease meshfed-system/meshfed-agent-east not read yet"
    stale = replace(STANDBY, unchanged_for=40.0)
    why = leadership_problem(stale)
    assert why is not None and "held by 'east-1'" in why and "unchanged for 40s" in why
    stuck = replace(STANDBY, holder="", unchanged_for=17.0)  # free but never taken
    assert "(free)" in (leadership_problem(stuck) or "")
    # Not a readiness check (DNS must stay up through an API server outage): a metric.
    assert readiness(replace(READY, election=stale)) == []
    healthy = {m.name: m for m in collect_metrics(replace(READY, election=stale), {})}
    assert healthy["meshfed_agent_leader_election_healthy"].samples[0].value == 0
    fine = {m.name: m for m in collect_metrics(replace(READY, election=STANDBY), {})}
    assert fine["meshfed_agent_leader_election_healthy"].samples[0].value == 1
    everything = replace(Snapshot(stopped=("source",)), election=unread)
    assert len(readiness(everything)) == 3  # one line per failing check


def render(snapshot: Snapshot, rejected: dict[int, int] | None = None) -> str:
    reg = CollectorRegistry(auto_describe=False)

    class One:
        def collect(self) -> Any:
            return collect_metrics(snapshot, rejected or {})

    reg.register(One())  # type: ignore[arg-type]
    return generate_latest(reg).decode()


def test_metrics_carry_the_snapshot() -> None:
    snap = replace(
        READY,
        source_services=3,
        exported_services=3,
        imported_services=2,
        import_revision=41,
        views_applied=5,
        export_stream_up=True,
        export_stream_restarts=2,
        svid_expiry=1_900_000_000.0,
    )
    m = parse(render(snap, {404: 2}))
    assert m["meshfed_agent_ready"] == {(): 1.0}
    assert m["meshfed_agent_registry_joined"] == {(): 1.0}
    assert m["meshfed_agent_source_services"] == {(): 3.0}
    assert m["meshfed_agent_exported_services"] == {(): 3.0}
    assert m["meshfed_agent_imported_services"] == {(): 2.0}
    assert m["meshfed_agent_import_revision"] == {(): 41.0}
    assert m["meshfed_agent_import_views_total"] == {(): 5.0}
    assert m["meshfed_agent_export_stream_up"] == {(): 1.0}
    assert m["meshfed_agent_export_stream_restarts_total"] == {(): 2.0}
    assert m["meshfed_agent_svid_expiry_timestamp_seconds"] == {(): 1_900_000_000.0}
    assert m["meshfed_agent_leader"] == {(): 1.0}  # no election: the only replica writes
    assert m["meshfed_agent_admin_rejected_requests_total"] == {
        (("code", "400"),): 0.0,
        (("code", "404"),): 2.0,
        (("code", "405"),): 0.0,
    }
    # before the join there is no SVID to report; with election the elector has the series
    m = parse(render(replace(Snapshot(), election=STANDBY)))
    assert m["meshfed_agent_ready"] == {(): 0.0}
    assert "meshfed_agent_svid_expiry_timestamp_seconds" not in m
    assert "meshfed_agent_leader" not in m


def test_admin_address_flag() -> None:
    assert admin_address("off") is None
    assert admin_address("0.0.0.0:9474") == ("0.0.0.0", 9474)
    assert admin_address("[::1]:9474") == ("::1", 9474)
