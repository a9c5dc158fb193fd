"""Measure each backend and print one table (see package docstring)."""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import tempfile
import time
import tracemalloc
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

from federation.model import Endpoint, Port
from federation.store import Store, open_store
from federation.store.typed import ROOT, TypedChanges, TypedSnapshot

BACKENDS = ("sqlite", "postgresql", "etcd")
WATCHERS = 100  # issue 2: "one write to 100 watchers"
FANOUT_WRITES = 200  # writes timed per fan-out run: 20,000 (write, watcher) samples


@dataclass
class Result:
    backend: str
    single_puts_per_s: float = 0.0
    batched_eps_per_s: float = 0.0
    raw_list_s: float = 0.0
    snapshot_s: float = 0.0
    snapshot_cpu_s: float = 0.0  # process CPU (all threads): steadier than wall time
    fanout_local_ms: tuple[float, float] = (0.0, 0.0)
    fanout_remote_ms: tuple[float, float] = (0.0, 0.0)
    bytes_per_endpoint: float = 0.0


@contextmanager
def server_urls(names: list[str]) -> Iterator[dict[str, str]]:
    """Start the real servers the chosen backends need; yield one fresh URL each."""
    with ExitStack() as stack:
        urls: dict[str, str] = {}
        tmp = stack.enter_context(tempfile.TemporaryDirectory())
        if "sqlite" in names:
            urls["sqlite"] = f"sqlite:///{tmp}/bench.db"
        if "postgresql" in names:
            from tests.servers.postgres import PostgresServer

            pg = stack.enter_context(PostgresServer())
            urls["postgresql"] = pg.create_database("bench")
        if "etcd" in names:
            from tests.servers.etcd import EtcdServer

            etcd = stack.enter_context(EtcdServer())
            urls["etcd"] = etcd.url_for("bench")
        yield urls


def endpoint(service: int, index: int) -> Endpoint:
    return Endpoint(
        cluster="east",
        namespace="bench",
        service=f"svc-{service}",
        address=f"10.{index // 250}.{index % 250}.{service % 250}",
        ports=(Port(8080, name="http"),),
        zone=f"zone-{index % 3}",
    )


async def single_puts(store: Store, count: int) -> float:
    started = time.perf_counter()
    for i in range(count):
        await store.endpoints.put(endpoint(99_999, i))
    return count / (time.perf_counter() - started)


async def batched(store: Store, services: int, per_service: int) -> float:
    started = time.perf_counter()
    for s in range(services):
        eps = [endpoint(s, i) for i in range(per_service)]
        await store.replace_endpoints("east", "bench", f"svc-{s}", eps)
        if s % 100 == 99:
            print(f"    wrote {s + 1}/{services} services", flush=True)
    return services * per_service / (time.perf_counter() - started)


async def snapshot_times(store: Store) -> tuple[float, float, float, float]:
    """Raw list, typed first snapshot (wall and CPU), and traced bytes per decoded endpoint."""
    started = time.perf_counter()
    raw, _ = await store.backend.list(f"{ROOT}endpoints/")
    raw_s = time.perf_counter() - started
    del raw
    gc.collect()
    feed = store.watch(kind="endpoints")
    started, cpu = time.perf_counter(), time.process_time()
    first = await anext(feed)
    snap_s = time.perf_counter() - started
    snap_cpu = time.process_time() - cpu
    await feed.aclose()
    assert isinstance(first, TypedSnapshot)
    count = len(first.items)
    del first
    gc.collect()
    tracemalloc.start()
    feed = store.watch(kind="endpoints")
    held = await anext(feed)
    current, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    await feed.aclose()
    del held
    return raw_s, snap_s, snap_cpu, current / max(count, 1)


async def fanout(writer: Store, watcher_store: Store) -> tuple[float, float]:
    """p50/p99 ms from commit start to each of 100 watchers holding the change."""
    since = await writer.revision()
    starts: list[float] = []  # commit start of the i-th write
    latencies: list[float] = []
    done = asyncio.Event()
    remaining = WATCHERS

    async def watcher() -> None:
        nonlocal remaining
        seen = 0
        async for message in watcher_store.watch(since=since, kind="gateways"):
            if isinstance(message, TypedChanges):
                latencies.append(time.perf_counter() - starts[seen])
                seen += 1
                if seen == FANOUT_WRITES:
                    break
        remaining -= 1
        if remaining == 0:
            done.set()

    from federation.model import Gateway

    tasks = [asyncio.create_task(watcher()) for _ in range(WATCHERS)]
    await asyncio.sleep(0.5)  # let every watcher subscribe
    for i in range(FANOUT_WRITES):
        gw = Gateway("east", (f"10.9.{i // 250}.{i % 250}:15443",))
        starts.append(time.perf_counter())
        await writer.gateways.put(gw)
        await asyncio.sleep(0.005)  # spread writes: measure latency, not queueing
    await asyncio.wait_for(done.wait(), 60)
    await asyncio.gather(*tasks)
    ms = sorted(x * 1000 for x in latencies)
    return statistics.median(ms), ms[int(len(ms) * 0.99) - 1]


async def measure(name: str, url: str, services: int, per_service: int) -> Result:
    print(f"== {name}", flush=True)
    result = Result(name)
    store = await open_store(url)
    other = await open_store(url)
    try:
        result.single_puts_per_s = await single_puts(store, 500)
        result.batched_eps_per_s = await batched(store, services, per_service)
        (
            result.raw_list_s,
            result.snapshot_s,
            result.snapshot_cpu_s,
            result.bytes_per_endpoint,
        ) = await snapshot_times(store)
        result.fanout_local_ms = await fanout(store, store)
        result.fanout_remote_ms = await fanout(other, store)
    finally:
        await other.close()
        await store.close()
    return result


def table(results: list[Result], total: int) -> str:
    rows: list[tuple[str, ...]] = [
        (
            "backend",
            "puts/s",
            "batched ep/s",
            f"raw list {total} s",
            "snapshot s",
            "snapshot CPU s",
            "snap/raw",
            "fan-out p50/p99 ms (same store)",
            "(other conn)",
            "B/endpoint",
        )
    ]
    for r in results:
        rows.append(
            (
                r.backend,
                f"{r.single_puts_per_s:,.0f}",
                f"{r.batched_eps_per_s:,.0f}",
                f"{r.raw_list_s:.3f}",
                f"{r.snapshot_s:.3f}",
                f"{r.snapshot_cpu_s:.3f}",
                f"{r.snapshot_s / r.raw_list_s:.1f}x" if r.raw_list_s else "-",
                "{:.1f} / {:.1f}".format(*r.fanout_local_ms),
                "{:.1f} / {:.1f}".format(*r.fanout_remote_ms),
                f"{r.bytes_per_endpoint:,.0f}",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.store")
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--per-service", type=int, default=100)
    args: Any = parser.parse_args(argv)
    names = [n.strip() for n in args.backends.split(",") if n.strip()]
    for n in names:
        if n not in BACKENDS:
            parser.error(f"--backends: unknown backend {n!r} (choose from {', '.join(BACKENDS)})")
    results: list[Result] = []
    with server_urls(names) as urls:
        for name in names:
            results.append(asyncio.run(measure(name, urls[name], args.services, args.per_service)))
    print()
    print(table(results, args.services * args.per_service))
    return 0
