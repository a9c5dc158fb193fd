"""The Kubernetes source and sink against the fake API server, over real HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from kube_pipeline import Pipeline, build_view, eventually, kube_api, seed, slice_body
from kubernetes import client

from discovery_sync.kube import conditions, plan
from discovery_sync.kube.sink import KubeSink
from discovery_sync.kube.source import KubeSource
from discovery_sync.sources.kube import NamespaceFilter
from discovery_sync.types import LocalService
from federation.model import Port, ServiceExport, ServiceKey
from tests.fakekube import FakeKube

MCS = ("multicluster.x-k8s.io", "v1alpha1")


@pytest.fixture
def kube_b() -> Iterator[FakeKube]:
    with FakeKube(bookmark_interval=0.2) as server:
        yield server


@pytest.fixture
def kube_a() -> Iterator[FakeKube]:
    with FakeKube(bookmark_interval=0.2) as server:
        yield server


def custom(kube: FakeKube) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(client.ApiClient(kube.kube_config()))


def objects(kube: FakeKube, plural: str) -> dict[tuple[str, str], dict[str, Any]]:
    store = kube.store
    group = "multicluster.x-k8s.io" if plural.startswith("service") else "discovery.k8s.io"
    return {k: v for k, v in store.objects.get((group, plural), {}).items()}


def writes(kube: FakeKube) -> list[tuple[str, str]]:
    return [(m, p) for m, p in kube.requests if m != "GET"]


@pytest.fixture
async def source_b(kube_b: FakeKube) -> AsyncIterator[tuple[KubeSource, list[Any]]]:
    seen: list[Any] = []

    async def on_change(exports: Any) -> None:
        seen.append(exports)

    source = KubeSource(
        kube_api(kube_b),
        on_change,
        cluster="b",
        default_zone="b-z",
        namespaces=NamespaceFilter(exclude=frozenset({"kube-system"})),
    )
    task = asyncio.create_task(source.run())
    yield source, seen
    source.stop()
    task.cancel()


async def test_source_exports_services_and_writes_valid(
    kube_b: FakeKube, source_b: tuple[KubeSource, list[Any]]
) -> None:
    _source, seen = source_b
    seed(kube_b, "demo", "echo", ["10.1.0.1", "10.1.0.2"])
    seed(kube_b, "demo", "private", ["10.1.0.9"], export=False)
    key = ServiceKey("demo", "echo")
    await eventually(lambda: seen and key in seen[-1] and len(seen[-1][key].endpoints) == 2)
    assert list(seen[-1]) == [key]
    echo: LocalService = seen[-1][key]
    assert echo.export.ports == (Port(80, "TCP", "http"),)
    assert {e.zone for e in echo.endpoints} == {"b-z1"}
    cx = custom(kube_b)

    def valid() -> bool:
        obj = cx.get_namespaced_custom_object(*MCS, "demo", "serviceexports", "echo")
        conds = {c["type"]: c for c in (obj.get("status") or {}).get("conditions", [])}
        return conds.get("Valid", {}).get("status") == "True"

    await eventually(valid)
    # endpoint readiness flows through
    disc = client.DiscoveryV1Api(client.ApiClient(kube_b.kube_config()))
    disc.replace_namespaced_endpoint_slice(
        "echo-abcde", "demo", slice_body("echo", ["10.1.0.1", "10.1.0.2"], ready=False)
    )
    await eventually(lambda: not any(e.ready for e in seen[-1][key].endpoints))
    # an export without a service is reported on the ServiceExport
    cx.create_namespaced_custom_object(
        *MCS,
        "demo",
        "serviceexports",
        {
            "apiVersion": "multicluster.x-k8s.io/v1alpha1",
            "kind": "ServiceExport",
            "metadata": {"name": "ghost"},
        },
    )

    def no_service() -> bool:
        obj = cx.get_namespaced_custom_object(*MCS, "demo", "serviceexports", "ghost")
        conds = (obj.get("status") or {}).get("conditions", [])
        return any(c["reason"] == "NoService" for c in conds)

    await eventually(no_service)
    # unexporting removes it
    cx.delete_namespaced_custom_object(*MCS, "demo", "serviceexports", "echo")
    await eventually(lambda: key not in seen[-1])


async def test_agent_conditions_are_written_once(
    kube_b: FakeKube, source_b: tuple[KubeSource, list[Any]]
) -> None:
    source, seen = source_b
    seed(kube_b, "demo", "echo", ["10.1.0.1"])
    await eventually(lambda: seen and seen[-1])
    local = seen[-1][ServiceKey("demo", "echo")].export
    older = ServiceExport(
        "c", "demo", "echo", local.created.replace(year=2000), (Port(80, "TCP", "web"),)
    )
    now = local.created
    cond = conditions.conflict(local, [older], now)
    assert cond.status == "True" and cond.reason == "PortConflict"
    await source.set_conditions({("demo", "echo"): [cond, conditions.ready(True, now)]})
    obj = custom(kube_b).get_namespaced_custom_object(*MCS, "demo", "serviceexports", "echo")
    types = {c["type"]: c["reason"] for c in obj["status"]["conditions"]}
    assert types == {"Valid": "Valid", "Conflict": "PortConflict", "Ready": "Ready"}
    before = len(writes(kube_b))
    await source.set_conditions({("demo", "echo"): [cond, conditions.ready(True, now)]})
    assert len(writes(kube_b)) == before  # same conditions: nothing written


def test_conflict_winner_and_loser() -> None:
    from datetime import UTC, datetime

    t1, t2 = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC)
    a = ServiceExport("a", "demo", "echo", t1, (Port(80, "TCP", "http"),))
    b = ServiceExport("b", "demo", "echo", t2, (Port(80, "TCP", "web"),))
    assert conditions.conflict(a, [b], t2).status == "False"  # oldest wins
    assert conditions.conflict(b, [a], t2).status == "True"
    same = ServiceExport("c", "demo", "echo", t2, (Port(80, "TCP", "http"),))
    assert conditions.conflict(same, [a], t2).status == "False"


async def test_sink_writes_valid_mcs_objects_idempotently_and_sweeps(kube_a: FakeKube) -> None:
    seed(kube_a, "demo", "unrelated", ["10.9.9.9"], export=False)
    disc = client.DiscoveryV1Api(client.ApiClient(kube_a.kube_config()))
    orphan = slice_body("old", ["10.0.0.1"])
    orphan["metadata"] = {
        "name": "old-b-x",
        "labels": {plan.MANAGED_BY_LABEL: "meshfed", plan.SERVICE_NAME_LABEL: "old"},
    }
    disc.create_namespaced_endpoint_slice("demo", orphan)
    exports = {
        ServiceKey("demo", "echo"): _local("echo", ["10.1.0.1", "10.1.0.2"]),
        ServiceKey("demo", "db"): _local("db", ["10.1.0.7"], headless=True),
    }
    sink = KubeSink(kube_api(kube_a), plan.SliceTargets())
    view = build_view("a", {"b": exports})
    await sink.apply(view)
    imports = objects(kube_a, "serviceimports")
    echo = imports[("demo", "echo")]
    assert echo["spec"]["type"] == "ClusterSetIP" and echo["spec"]["ips"]
    assert echo["spec"]["ports"] == [{"name": "http", "port": 80, "protocol": "TCP"}]
    assert echo["status"] == {"clusters": [{"cluster": "b"}]}
    assert imports[("demo", "db")]["spec"]["type"] == "Headless"
    slices = objects(kube_a, "endpointslices")
    assert ("demo", "old-b-x") not in slices  # orphan swept
    assert ("demo", "unrelated-abcde") in slices  # not ours: untouched
    ours = [s for s in slices.values() if s["metadata"]["labels"].get(plan.MANAGED_BY_LABEL)]
    assert len(ours) == 2
    for s in ours:
        labels = s["metadata"]["labels"]
        assert labels[plan.SOURCE_CLUSTER_LABEL] == "b"
        assert labels[plan.SERVICE_NAME_LABEL] in ("echo", "db")
    before = len(writes(kube_a))
    await sink.apply(view)
    await sink.resync()
    assert len(writes(kube_a)) == before  # idempotent
    # drift: someone deletes a managed slice; the resync puts it back
    name = next(
        k
        for k, s in objects(kube_a, "endpointslices").items()
        if s["metadata"]["labels"].get(plan.SERVICE_NAME_LABEL) == "echo"
    )
    disc.delete_namespaced_endpoint_slice(name[1], "demo")
    await sink.resync()
    assert name in objects(kube_a, "endpointslices")
    # the service goes away: its import and slices go too
    await sink.apply(
        build_view("a", {"b": {ServiceKey("demo", "db"): exports[ServiceKey("demo", "db")]}}, 2)
    )
    assert ("demo", "echo") not in objects(kube_a, "serviceimports")
    assert all(
        s["metadata"]["labels"].get(plan.SERVICE_NAME_LABEL) != "echo"
        for s in objects(kube_a, "endpointslices").values()
    )


def _local(name: str, addrs: list[str], headless: bool = False) -> LocalService:
    from datetime import UTC, datetime

    from federation.model import Endpoint

    export = ServiceExport(
        "b", "demo", name, datetime(2026, 1, 1, tzinfo=UTC), (Port(80, "TCP", "http"),)
    )
    eps = tuple(Endpoint("b", "demo", name, a, (Port(8080, "TCP", "http"),), "b-z1") for a in addrs)
    return LocalService(export, eps, headless)


async def test_sink_survives_conflicting_writer(kube_a: FakeKube) -> None:
    exports = {ServiceKey("demo", "echo"): _local("echo", ["10.1.0.1"])}
    client.CoreV1Api(client.ApiClient(kube_a.kube_config())).create_namespace(
        {"metadata": {"name": "demo"}}
    )
    sink = KubeSink(kube_api(kube_a), plan.SliceTargets())
    await sink.apply(build_view("a", {"b": exports}))
    # someone edits the import behind the sink's back: its cached version is stale
    cx = custom(kube_a)
    obj = cx.get_namespaced_custom_object(*MCS, "demo", "serviceimports", "echo")
    obj["metadata"]["labels"]["someone"] = "else"
    cx.replace_namespaced_custom_object(*MCS, "demo", "serviceimports", "echo", obj)
    exports2 = {
        ServiceKey("demo", "echo"): LocalService(
            ServiceExport(
                "b",
                "demo",
                "echo",
                exports[ServiceKey("demo", "echo")].export.created,
                (Port(81, "TCP", "http"),),
            ),
            exports[ServiceKey("demo", "echo")].endpoints,
        )
    }
    await sink.apply(build_view("a", {"b": exports2}, 2))
    got = cx.get_namespaced_custom_object(*MCS, "demo", "serviceimports", "echo")
    assert got["spec"]["ports"][0]["port"] == 81
    assert got["metadata"]["labels"]["someone"] == "else"
    assert sink.stats.conflicts == 1 and sink.stats.failures == 0


async def test_pipeline_survives_410_and_dropped_watches_without_loss_or_duplicates(
    kube_a: FakeKube, kube_b: FakeKube
) -> None:
    client.CoreV1Api(client.ApiClient(kube_a.kube_config())).create_namespace(
        {"metadata": {"name": "demo"}}
    )
    pipe = Pipeline(kube_b, kube_a).start()
    try:
        for i in range(5):
            seed(kube_b, "demo", f"svc{i}", [f"10.2.0.{i + 1}"])
        await eventually(lambda: len(objects(kube_a, "serviceimports")) == 5)
        # the watch connections drop; changes made meanwhile must still arrive
        kube_b.drop_watches()
        for i in range(5, 8):
            seed(kube_b, "demo", f"svc{i}", [f"10.2.0.{i + 1}"])
        # history is compacted while the watches are down: the informers come back
        # with versions that are gone (410) and must relist
        kube_b.drop_watches()
        disc = client.DiscoveryV1Api(client.ApiClient(kube_b.kube_config()))
        disc.replace_namespaced_endpoint_slice(
            "svc0-abcde", "demo", slice_body("svc0", ["10.2.0.100", "10.2.0.101"])
        )
        custom(kube_b).delete_namespaced_custom_object(*MCS, "demo", "serviceexports", "svc1")
        kube_b.compact()
        seed(kube_b, "demo", "svc8", ["10.2.0.9"])

        def converged() -> bool:
            imports = objects(kube_a, "serviceimports")
            want = {("demo", f"svc{i}") for i in (0, 2, 3, 4, 5, 6, 7, 8)}
            if set(imports) != want:
                return False
            addrs = sorted(
                e["addresses"][0]
                for s in objects(kube_a, "endpointslices").values()
                if s["metadata"]["labels"].get(plan.SERVICE_NAME_LABEL) == "svc0"
                for e in s["endpoints"]
            )
            return addrs == ["10.2.0.100", "10.2.0.101"]

        await eventually(converged, 15)
        await asyncio.sleep(0.5)  # long enough for a bookmark (every 0.2 s here)
        stats = [i.stats for i in pipe.source.informers]
        assert sum(s.gone for s in stats) >= 1 and sum(s.lists for s in stats) >= 4
        assert sum(s.bookmarks for s in stats) >= 1
        creates = [p for m, p in writes(kube_a) if m == "POST" and "serviceimports" in p]
        assert len(creates) == 9  # one per service ever exported: no duplicate import
        assert pipe.sink.stats.failures == 0 and pipe.sink.stats.conflicts == 0
    finally:
        await pipe.stop()
