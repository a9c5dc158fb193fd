"""Measure propagation through the control plane and REST list latency (see package doc)."""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from federation.client import ControlPlaneClient, join
from federation.client.client import ExportedService
from federation.client.watch import Delta, Snapshot, WatchView
from federation.controlplane.server import start
from federation.model import Cluster, Endpoint, Link, Port, ServiceExport, ServiceKey
from federation.registry.trust import TrustService
from federation.store import open_store
from federation.store.typed import TypedChanges
from trust_bundle import PassphraseProtector

HUB = "hub"  # the watching cluster, linked to every agent's cluster
T0 = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass
class Figures:
    backend: str
    initial_sync_s: float
    p50_ms: float
    p99_ms: float
    store_p50_ms: float
    store_p99_ms: float


@contextmanager
def store_urls(names: list[str]) -> Iterator[dict[str, str]]:
    with ExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory())
        urls = {}
        if "sqlite" in names:
            urls["sqlite"] = f"sqlite:///{tmp}/registry.db"
        if "etcd" in names:
            from tests.servers.etcd import EtcdServer

            urls["etcd"] = stack.enter_context(EtcdServer()).url_for("bench")
        if "postgresql" in names:
            from tests.servers.postgres import PostgresServer

            urls["postgresql"] = stack.enter_context(PostgresServer()).create_database("bench")
        yield urls


def service(agent: int, s: int, version: int, endpoints: int) -> ExportedService:
    cluster, name = f"c{agent}", f"svc-{agent}-{s}"
    export = ServiceExport(cluster, "bench", name, T0, (Port(8080, name="http"),))
    eps = [
        Endpoint(cluster, "bench", name, f"10.{agent}.{s % 250}.{i + 1}", (Port(8080),), "z1",
                 weight=version + 1)
        for i in range(endpoints)
    ]  # fmt: skip
    return ExportedService(export, eps)


async def measure(name: str, url: str, args: Any) -> Figures:
    print(f"== {name}", flush=True)
    store = await open_store(url)
    now = datetime.now(UTC)
    trust = TrustService(store, PassphraseProtector(b"benchmark-passphrase-0123"))
    await trust.ensure_root(now)
    clusters = [Cluster(HUB, "r0", "z0", "hub.bench")] + [
        Cluster(f"c{i}", f"r{i % 3}", "z1", f"c{i}.bench") for i in range(args.agents)
    ]
    for cluster in clusters:
        await store.clusters.create(cluster)
        await trust.issue_cluster_ca(cluster, now)
        if cluster.name != HUB:
            await store.links.create(Link(HUB, cluster.name, bidirectional=False))
    plane = await start(store, trust, "127.0.0.1:0")
    ca = await trust.bundle_pem()

    async def client(cluster: Cluster, component: str) -> ControlPlaneClient:
        token = await trust.create_join_token(cluster.name, timedelta(hours=1), now)
        identity = await join(
            plane.join_address, token, cluster=cluster.name, component=component,
            trust_domain=cluster.trust_domain, ca_pem=ca,
        )  # fmt: skip
        return ControlPlaneClient(plane.address, identity)

    per_agent = args.services // args.agents
    agents = [await client(c, "agent") for c in clusters[1:]]
    reporters = [a.report_endpoints() for a in agents]
    started = time.perf_counter()
    for i, reporter in enumerate(reporters):
        await reporter.__aenter__()
        await reporter.full_state(service(i, s, 0, args.endpoints) for s in range(per_agent))
    hub = await client(clusters[0], "gateway")
    arrivals: dict[tuple[int, int], list[float]] = {}
    synced = asyncio.Event()
    ready = 0

    async def watcher() -> None:
        nonlocal ready
        view = WatchView()
        counted = False
        async for event in hub.watch():
            view = view.apply(event)
            if not counted and len(view.items.imports) >= args.services:
                counted = True
                ready += 1
                if ready == args.watchers:
                    synced.set()
            if isinstance(event, Delta):
                for key, imp in event.upserted.imports.items():
                    version = imp.endpoints[0].weight - 1 if imp.endpoints else -1
                    arrivals.setdefault((hash(key), version), []).append(time.perf_counter())
            elif isinstance(event, Snapshot):
                continue

    tasks = [asyncio.create_task(watcher()) for _ in range(args.watchers)]
    await asyncio.wait_for(synced.wait(), 300)
    initial = time.perf_counter() - started
    print(f"    initial sync of {args.services * args.endpoints} endpoints: {initial:.1f} s")

    store_seen: dict[int, float] = {}

    async def store_watcher() -> None:
        async for message in store.watch(since=await store.revision(), kind="endpoints"):
            if isinstance(message, TypedChanges):
                store_seen[message.revision] = time.perf_counter()

    raw = asyncio.create_task(store_watcher())
    await asyncio.sleep(0.3)
    sent: list[tuple[tuple[int, int], float, int]] = []
    for d in range(args.deltas):
        agent, s = d % args.agents, (d * 7) % per_agent
        svc = service(agent, s, d + 1, args.endpoints)
        rev_before = await store.revision()
        t0 = time.perf_counter()
        await reporters[agent].delta([svc])
        sent.append(((hash(ServiceKey("bench", f"svc-{agent}-{s}")), d + 1), t0, rev_before))
        await asyncio.sleep(args.gap)
    await asyncio.sleep(1.0)
    latencies = [(t - t0) * 1000 for key, t0, _ in sent for t in arrivals.get(key, [])]
    missing = sum(args.watchers - len(arrivals.get(key, [])) for key, _, _ in sent)
    if missing:
        print(f"    WARNING: {missing} (delta, watcher) arrivals not seen within 1 s")
    store_lat = sorted(
        (store_seen[r] - t0) * 1000
        for (_, t0, before) in sent
        for r in [min((r for r in store_seen if r > before), default=0)]
        if r
    )
    for t in [*tasks, raw]:
        t.cancel()
    await asyncio.gather(*tasks, raw, return_exceptions=True)
    for reporter in reporters:
        await reporter.close()
    for c in [*agents, hub]:
        await c.close()
    await plane.stop(0)
    await store.close()
    lat = sorted(latencies)
    return Figures(
        name, initial, statistics.median(lat), lat[int(len(lat) * 0.99) - 1],
        statistics.median(store_lat), store_lat[int(len(store_lat) * 0.99) - 1],
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.registry")
    parser.add_argument("--backends", default="sqlite,etcd")
    parser.add_argument("--agents", type=int, default=10)
    parser.add_argument("--services", type=int, default=1000, help="in total, over all agents")
    parser.add_argument("--endpoints", type=int, default=10, help="per service")
    parser.add_argument("--watchers", type=int, default=20)
    parser.add_argument("--deltas", type=int, default=200)
    parser.add_argument("--gap", type=float, default=0.02, help="seconds between deltas")
    args = parser.parse_args(argv)
    names = [n for n in args.backends.split(",") if n]
    results = []
    with store_urls(names) as urls:
        for name in names:
            results.append(asyncio.run(measure(name, urls[name], args)))
    print()
    print("backend | initial sync s | delta->20 watchers p50 / p99 ms | store feed p50 / p99 ms")
    for r in results:
        print(
            f"{r.backend} | {r.initial_sync_s:.1f} | {r.p50_ms:.1f} / {r.p99_ms:.1f} | "
            f"{r.store_p50_ms:.1f} / {r.store_p99_ms:.1f}"
        )
    return 0
