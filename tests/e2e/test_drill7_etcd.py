"""Drill 7 of issue 9: the registry on a 3-member etcd cluster; its leader killed under load.

The etcd members run inside the registry's namespace (on its own loopback,
127.0.0.1 there), started from a thread that entered that namespace, so they are
as far from the clusters as the registry itself. Members use etcd's customary
timing (100 ms heartbeat, 1 s election timeout) rather than the store suite's
fast flags: on 2 busy cores the fast flags cause spurious elections.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.e2e.conftest import _federation, record
from tests.e2e.harness import Federation, describe
from tests.e2e.netns import Net
from tests.servers.etcd import EtcdCluster

pytestmark = pytest.mark.slow

HOLD = 20.0  # seconds of load after the kill: longer than the 15 s lease TTL


@pytest.fixture(scope="module")
def etcd(net: Net) -> Iterator[EtcdCluster]:
    reg = net.thread("reg")
    cluster = EtcdCluster(3, ["--heartbeat-interval", "100", "--election-timeout", "1000"])
    reg.call(cluster.start)
    try:
        yield cluster
    finally:
        reg.call(cluster.close)


@pytest.fixture(scope="module")
def fed_etcd(net: Net, etcd: EtcdCluster, request: pytest.FixtureRequest) -> Iterator[Federation]:
    yield from _federation(net, request, etcd.url)


def test_drill7_etcd_leader_killed_under_load(
    fed_etcd: Federation, etcd: EtcdCluster, net: Net
) -> None:
    fed, reg = fed_etcd, net.thread("reg")
    clusters_before = {c["name"] for c in fed.expect("GET", "/api/v1/clusters", 200)["items"]}
    links_before = len(fed.expect("GET", "/api/v1/links", 200)["items"])
    assert fed.endpoint_clusters() == {"b", "c"}
    lost_endpoints: list[float] = []
    with fed.load("a") as load:
        time.sleep(2.0)
        leader = reg.call(etcd.leader)
        killed_at = time.monotonic()
        reg.call(etcd.kill, leader)
        new_leader = reg.call(etcd.leader)
        election_s = time.monotonic() - killed_at
        # a write through the new leader: a join token is a registration step
        fed.expect("POST", "/api/v1/clusters/a/join-tokens", 201, {})
        write_s = time.monotonic() - killed_at
        while time.monotonic() - killed_at < HOLD:
            if fed.endpoint_clusters() != {"b", "c"}:
                lost_endpoints.append(round(time.monotonic() - killed_at, 2))
            time.sleep(0.5)
        reg.call(etcd.restart, leader)
        time.sleep(1.0)
    samples = load.samples
    clusters_after = {c["name"] for c in fed.expect("GET", "/api/v1/clusters", 200)["items"]}
    links_after = len(fed.expect("GET", "/api/v1/links", 200)["items"])
    record("drill 7 etcd leader killed", **describe(samples),
           killed=leader.name, new_leader=new_leader.name,
           new_leader_after_s=round(election_s, 3), first_write_after_s=round(write_s, 3),
           endpoint_gaps_at_s=lost_endpoints)  # fmt: skip
    failed = [s for s in samples if s.served_by is None]
    assert not failed, sorted({s.error for s in failed})
    assert {s.served_by for s in samples} == {"b"}
    assert new_leader.name != leader.name
    assert clusters_after == clusters_before == {"a", "b", "c"}
    assert links_after == links_before == 3
    assert not lost_endpoints, f"b's or c's endpoints missing at {lost_endpoints} s"
    assert fed.endpoint_clusters() == {"b", "c"}
    assert set(fed.egress_clusters("a")) == {"b", "c"}
