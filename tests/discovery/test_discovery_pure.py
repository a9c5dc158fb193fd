"""Pure pieces: imports file round trip, cluster-set IP allocation, plan/diff, backoff."""

from __future__ import annotations

import ipaddress
import random
from datetime import UTC, datetime

from discovery_views import CALLER, clusterset, ep, headless, view
from hypothesis import given, settings
from hypothesis import strategies as st

from discovery_sync.backoff import Backoff, jittered
from discovery_sync.dns.zone import compile_zone, names
from discovery_sync.imports_file import dump, load
from discovery_sync.ipam import allocate, parse_cidr
from discovery_sync.kube import conditions, plan
from discovery_sync.registry_view import export_delta
from discovery_sync.types import LocalService
from federation.model import Port, ServiceExport, ServiceKey


def test_imports_file_round_trip_serves_the_same_zone() -> None:
    original = view(clusterset(), headless(), west=False)
    again = load(dump(original))
    assert again.services == original.services
    assert again.clusters == original.clusters and again.revision == original.revision
    assert list(names(compile_zone(again, CALLER))) == list(names(compile_zone(original, CALLER)))


_keys = st.lists(
    st.builds(
        ServiceKey,
        st.from_regex(r"[a-z][a-z0-9]{0,5}", fullmatch=True),
        st.from_regex(r"[a-z][a-z0-9]{0,5}", fullmatch=True),
    ),
    unique=True,
    max_size=60,
)


@given(_keys, _keys)
@settings(max_examples=80, deadline=None)
def test_allocation_is_unique_in_range_and_stable(
    first: list[ServiceKey], more: list[ServiceKey]
) -> None:
    cidr = parse_cidr("10.255.0.0/24")
    a = allocate(first, cidr)
    assert len(set(a.values())) == len(a)
    assert all(ipaddress.ip_address(ip) in cidr for ip in a.values())
    b = allocate(first + more, cidr, a)
    assert all(b[k] == a[k] for k in a)  # what was given out is kept
    assert len(set(b.values())) == len(b)
    assert allocate(first, cidr) == a  # deterministic


def test_plan_diff_is_empty_against_what_it_wrote() -> None:
    v = view(clusterset(), headless())
    want = plan.desired(v, plan.SliceTargets())
    # what the API server would hold: the bodies plus server fields and defaults
    have = {}
    for key, body in want.slices.items():
        held = {**body, "metadata": {**body["metadata"], "resourceVersion": "7", "uid": "u"}}
        have[key] = held
    assert plan.diff(want.slices, have) == []
    assert [w.verb for w in plan.diff(want.slices, {})] == ["create"] * len(want.slices)
    stale = {("demo", "gone"): {"metadata": {"name": "gone", "labels": {}}}}
    assert [w.verb for w in plan.diff({}, stale)] == ["delete"]


def test_slice_targets() -> None:
    v = view(clusterset(), gateways=True)
    egress = plan.desired(v, plan.SliceTargets(egress_addresses=("10.0.0.9",)))
    (body,) = egress.slices.values()
    assert [e["addresses"] for e in body["endpoints"]] == [["10.0.0.9"]]
    assert body["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]
    through = plan.desired(v, plan.SliceTargets(per_cluster={"west": "passthrough"}))
    (body,) = through.slices.values()
    assert body["endpoints"][0]["addresses"] == ["192.0.2.3"]
    assert body["ports"][0]["port"] == plan.GATEWAY_PORT
    direct = plan.desired(v, plan.SliceTargets())
    (body,) = direct.slices.values()
    assert body["endpoints"][0]["addresses"] == ["10.3.0.5"]
    assert body["ports"][0]["port"] == 9000


def test_many_endpoints_are_split_into_slices_of_100() -> None:
    eps = tuple(
        ep("west", "demo", "big", f"10.9.{i // 250}.{i % 250 + 1}", "us-west-1a")
        for i in range(250)
    )
    want = plan.desired(view(headless("big", eps=eps)), plan.SliceTargets())
    assert sorted(len(s["endpoints"]) for s in want.slices.values()) == [50, 100, 100]


def test_condition_merge_keeps_transition_time() -> None:
    t1, t2 = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC)
    first = conditions.merge([], [conditions.ready(True, t1)])
    assert first is not None
    assert conditions.merge(first, [conditions.ready(True, t2)]) is None
    flipped = conditions.merge(first, [conditions.ready(False, t2)])
    assert flipped is not None and flipped[0]["lastTransitionTime"] == "2026-02-01T00:00:00Z"


def test_export_delta() -> None:
    def local(name: str, port: int = 80) -> LocalService:
        export = ServiceExport(
            "east", "demo", name, datetime(2026, 1, 1, tzinfo=UTC), (Port(port),)
        )
        return LocalService(export)

    old = {ServiceKey("demo", "x"): local("x"), ServiceKey("demo", "y"): local("y")}
    new = {ServiceKey("demo", "x"): local("x", 81), ServiceKey("demo", "z"): local("z")}
    up, removed = export_delta(old, new)
    assert sorted(s.export.name for s in up) == ["x", "z"]
    assert removed == [ServiceKey("demo", "y")]


def test_backoff_grows_with_jitter_and_resets() -> None:
    b = Backoff(initial=0.1, maximum=2.0, rng=random.Random(1))
    delays = [b.next() for _ in range(10)]
    assert all(0.05 <= d <= 2.0 for d in delays)
    assert max(delays[5:]) > max(delays[:2])
    b.reset()
    assert b.next() <= 0.1
    assert 8 <= jittered(10, random.Random(2)) <= 12
