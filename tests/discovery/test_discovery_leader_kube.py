"""Leader election against the fake API server: the Lease shell, then two agent replicas.

Timings are shortened (lease 2 s, renew deadline 1 s, retry 0.25 s) so failover
fits in a test; the state machine is the one that runs with client-go's defaults.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from kube_pipeline import eventually, seed, slice_body
from kubernetes import client
from registry_fixture import CLUSTERS, Registry, registry

from discovery_sync.agent import Agent, AgentConfig
from discovery_sync.kube import plan
from discovery_sync.kube.lease import FencedApiClient, LeaderElector, LeaseClient, NotLeader
from discovery_sync.leader import LeaseRecord, Timing
from discovery_sync.types import Locality
from tests.fakekube import FakeKube

FAST = Timing(2, 1.0, 0.25)
NS = "meshfed-system"
NAME = "meshfed-agent-east"


@pytest.fixture
def kube() -> Iterator[FakeKube]:
    with FakeKube(bookmark_interval=0.2) as server:
        client.CoreV1Api(client.ApiClient(server.kube_config())).create_namespace(
            {"metadata": {"name": NS}}
        )
        yield server


def elector(
    kube: FakeKube, identity: str, leases: type[LeaseClient] = LeaseClient
) -> LeaderElector:
    api = client.ApiClient(kube.kube_config())
    return LeaderElector(leases(api, NS, NAME, timeout=1.0), identity, FAST)


@contextlib.asynccontextmanager
async def running(*electors: LeaderElector) -> AsyncIterator[dict[str, asyncio.Task[None]]]:
    tasks = {e.identity: asyncio.create_task(e.run()) for e in electors}
    try:
        yield tasks
    finally:
        for task in tasks.values():
            task.cancel()
        for task in tasks.values():
            with contextlib.suppress(BaseException):
                await task


def stored(kube: FakeKube) -> dict[str, Any]:
    lease: dict[str, Any] = kube.store.objects[("coordination.k8s.io", "leases")][(NS, NAME)]
    return lease


async def test_one_leader_renews_and_a_graceful_stop_hands_over_at_once(kube: FakeKube) -> None:
    a, b = elector(kube, "a"), elector(kube, "b")
    async with running(a) as tasks:
        await eventually(a.is_leader, 3)
        async with running(b):
            spec = stored(kube)["spec"]
            assert spec["holderIdentity"] == "a" and spec["leaseDurationSeconds"] == 2
            assert spec["leaseTransitions"] == 0 and spec["renewTime"].endswith("Z")
            first = spec["renewTime"]
            await asyncio.sleep(1.0)  # a renews, b waits
            assert a.is_leader() and not b.is_leader() and b.state.leader == "a"
            assert stored(kube)["spec"]["renewTime"] > first
            assert stored(kube)["spec"]["acquireTime"] == spec["acquireTime"]
            # a stops on purpose: it releases, b takes over at its next read
            tasks["a"].cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await tasks["a"]
            stopped = time.monotonic()
            assert not a.is_leader() and a.stats.released == 1
            await eventually(b.is_leader, 3)
            assert time.monotonic() - stopped < FAST.retry_period + 0.5
            spec = stored(kube)["spec"]
            assert spec["holderIdentity"] == "b" and spec["leaseTransitions"] == 1
    assert (
        a.metrics.registry.get_sample_value(
            "meshfed_agent_leader_transitions_total",
            {"lease": f"{NS}/{NAME}", "transition": "acquired"},
        )
        == 1.0
    )


async def test_a_crashed_leader_is_replaced_within_lease_duration_plus_retry(
    kube: FakeKube,
) -> None:
    a, b = elector(kube, "a"), elector(kube, "b")
    async with running(a) as tasks:
        await eventually(a.is_leader, 3)
        async with running(b):
            await asyncio.sleep(0.6)
            assert not b.is_leader()

            async def no_release() -> None:  # a crash: nobody hands the lease back
                return None

            a.release = no_release  # type: ignore[method-assign]
            tasks["a"].cancel()
            killed = time.monotonic()
            await eventually(b.is_leader, FAST.lease_duration + 2)
            took = time.monotonic() - killed
            assert FAST.lease_duration - FAST.renew_deadline <= took  # not before a stopped
            assert took <= FAST.lease_duration + FAST.retry_period + 0.5, took
            assert stored(kube)["spec"]["holderIdentity"] == "b"


class RacingLeases(LeaseClient):
    """Both candidates read the (absent) Lease before either writes: a create race."""

    barrier = threading.Barrier(2, timeout=5)
    raced = False

    def get(self) -> LeaseRecord | None:
        found = super().get()
        if not self.raced:
            self.raced = True
            with contextlib.suppress(threading.BrokenBarrierError):
                self.barrier.wait()
        return found


async def test_409_races_are_lost_cleanly(kube: FakeKube) -> None:
    RacingLeases.barrier = threading.Barrier(2, timeout=5)
    a, b = elector(kube, "a", RacingLeases), elector(kube, "b", RacingLeases)
    await asyncio.gather(a.tick(), b.tick())
    RacingLeases.barrier.abort()
    winner, loser = (a, b) if a.is_leader() else (b, a)
    assert winner.is_leader() and not loser.is_leader()
    assert loser.stats.conflicts == 1 and loser.state.leader == winner.identity
    assert [m for m, p in kube.requests if m == "POST" and "leases" in p] == ["POST", "POST"]
    # a stale PUT while leading (someone wrote between our read and our write): read
    # again, renew, stay leader without a transition
    kube.fail_next("update", "leases", 409, "Conflict")
    await winner.tick()
    assert winner.is_leader() and winner.stats.conflicts == 1 and winner.stats.lost == 0


async def test_fenced_client_refuses_writes_unless_leading(kube: FakeKube) -> None:
    a = elector(kube, "a")
    fenced = FencedApiClient(kube.kube_config(), a.fence)
    core = client.CoreV1Api(fenced)
    with pytest.raises(NotLeader):
        core.create_namespace({"metadata": {"name": "x"}})
    assert core.read_namespace("default").metadata.name == "default"  # reads pass
    await a.tick()
    assert a.is_leader()
    core.create_namespace({"metadata": {"name": "x"}})
    a.fence.deadline = time.monotonic()  # the renew deadline passes
    with pytest.raises(NotLeader):
        core.create_namespace({"metadata": {"name": "y"}})


# --- two replicas of east's agent ------------------------------------------------------


@pytest.fixture
async def reg(tmp_path: Path) -> AsyncIterator[Registry]:
    async with registry(tmp_path) as r:
        yield r


async def agent_config(reg: Registry, cluster: str, kubeconfig: Path, **kw: Any) -> AgentConfig:
    return AgentConfig(
        cluster=cluster,
        registry=reg.plane.address,
        join_address=reg.plane.join_address,
        join_token=await reg.token(cluster),  # join tokens are single-use: one per replica
        trust_domain=CLUSTERS[cluster].trust_domain,
        registry_ca=await reg.bundle(),
        locality=Locality(CLUSTERS[cluster].region, CLUSTERS[cluster].zone),
        kubeconfig=str(kubeconfig),
        **kw,
    )


MANAGED = ("serviceimports", "endpointslices", "serviceexports")


def writes(kube: FakeKube, since: int = 0) -> list[tuple[str, str]]:
    """Writes of managed objects (not Leases) this API server replica received."""
    return [
        (m, p)
        for m, p in kube.requests[since:]
        if m != "GET" and any(f"/{r}" in p for r in MANAGED)
    ]


async def test_two_replicas_one_writer_and_failover(reg: Registry, tmp_path: Path) -> None:
    with (
        FakeKube(bookmark_interval=0.2) as kube_west,
        FakeKube(bookmark_interval=0.2) as east_1,
        FakeKube(bookmark_interval=0.2, store=east_1.store) as east_2,  # one etcd, two servers
    ):
        for kube, name in ((kube_west, "west"), (east_1, "east-1"), (east_2, "east-2")):
            (tmp_path / f"{name}.kubeconfig").write_text(kube.kubeconfig_yaml())
        core = client.CoreV1Api(client.ApiClient(east_1.kube_config()))
        core.create_namespace({"metadata": {"name": "demo"}})
        core.create_namespace({"metadata": {"name": NS}})
        seed(kube_west, "demo", "echo", ["10.6.0.1"])
        west = Agent(await agent_config(reg, "west", tmp_path / "west.kubeconfig"))
        elect = {"leader_elect": True, "lease_timing": FAST}
        replicas = {
            "east-1": Agent(
                await agent_config(
                    reg, "east", tmp_path / "east-1.kubeconfig", identity="east-1", **elect
                )
            ),
            "east-2": Agent(
                await agent_config(
                    reg, "east", tmp_path / "east-2.kubeconfig", identity="east-2", **elect
                )
            ),
        }
        servers = {"east-1": east_1, "east-2": east_2}

        def east_addresses() -> list[str]:
            slices = east_1.store.objects.get(("discovery.k8s.io", "endpointslices"), {})
            return sorted(
                e["addresses"][0]
                for s in slices.values()
                if s["metadata"]["labels"].get(plan.SERVICE_NAME_LABEL) == "echo"
                for e in s["endpoints"]
            )

        tasks = {n: asyncio.create_task(a.run()) for n, a in replicas.items()}
        west_task = asyncio.create_task(west.run())
        try:
            await eventually(lambda: east_addresses() == ["10.6.0.1"], 20)
            leaders = [n for n, a in replicas.items() if a.elector and a.elector.is_leader()]
            assert len(leaders) == 1
            lead = leaders[0]
            follow = "east-2" if lead == "east-1" else "east-1"
            assert writes(servers[lead]) and not writes(servers[follow])
            # the follower is warm: it follows the registry and sees the same view
            await eventually(lambda: replicas[follow].view is not None, 5)
            assert replicas[follow].kube_sink is None and not replicas[follow].reported
            # the leader crashes (no release): the follower takes over after the lease
            elector = replicas[lead].elector
            assert elector is not None

            async def no_release() -> None:
                return None

            elector.release = no_release  # type: ignore[method-assign]
            mark = len(servers[lead].requests)
            tasks[lead].cancel()
            killed = time.monotonic()
            new = replicas[follow].elector
            assert new is not None
            await eventually(new.is_leader, FAST.lease_duration + 3)
            took = time.monotonic() - killed
            assert FAST.lease_duration - FAST.renew_deadline <= took
            assert took <= FAST.lease_duration + FAST.retry_period + 0.5, took
            # the new leader writes: a change in west reaches east through it
            follow_mark = len(servers[follow].requests)
            disc = client.DiscoveryV1Api(client.ApiClient(kube_west.kube_config()))
            disc.replace_namespaced_endpoint_slice(
                "echo-abcde", "demo", slice_body("echo", ["10.6.0.1", "10.6.0.2"])
            )
            await eventually(lambda: east_addresses() == ["10.6.0.1", "10.6.0.2"], 20)
            assert writes(servers[follow], follow_mark)
            assert not writes(servers[lead], mark)
            lease = stored(east_1)["spec"]
            assert lease["holderIdentity"] == follow and lease["leaseTransitions"] == 1
        finally:
            for task in [*tasks.values(), west_task]:
                task.cancel()
            for task in [*tasks.values(), west_task]:
                with contextlib.suppress(BaseException):
                    await task
