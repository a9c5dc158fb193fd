"""`GET /api/v1/services` latency with 10,000 exported services (issue 4).

`python -m benchmarks.registry.rest [--backends sqlite,etcd] [--services 10000
--requests 500]` from the repository root. The exports are written straight into
the store (in large transactions, as agents' reports would have left them), then
the real app (`create_app` over the real Registry, uvicorn on loopback, in its own
thread and event loop) answers `--requests` GETs from one httpx client over real
HTTP, one at a time. Timed: the first page (`limit=100`, what a dashboard asks
first), a page deep in the list (a `continue` token from the middle), a
namespace-filtered page, and the largest page (`limit=500`). The reference beside
them is the store's own list of every export (`store.exports.list()`), timed in the
registry's loop: what a request cannot beat if it reads the whole list.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from prometheus_client import CollectorRegistry

from federation.api import create_app
from federation.model import Port, ServiceExport
from federation.registry.pages import encode_token
from federation.registry.serve import bootstrap, open_registry
from federation.registry.service import Registry
from federation.store.backend import Put
from federation.store.typed import encode, storage_key
from trust_bundle import PassphraseProtector

T0 = datetime(2026, 1, 1, tzinfo=UTC)
NAMESPACES = 20
CLUSTERS = 10
# etcd's default --max-txn-ops is 128; the benchmark's etcd allows more (see below).
BATCH = 500


def export(i: int) -> ServiceExport:
    return ServiceExport(
        f"c{i % CLUSTERS}",
        f"ns-{i % NAMESPACES:02d}",
        f"svc-{i:05d}",
        T0,
        (Port(8080, name="http"), Port(9090, name="grpc", app_protocol="grpc")),
    )


@dataclass
class Scenario:
    name: str
    path: str
    params: dict[str, str]
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    items: int = 0


@dataclass
class Result:
    backend: str
    services: int
    seed_s: float
    store_list_p50_ms: float
    store_list_p99_ms: float
    scenarios: list[Scenario]


@contextmanager
def store_urls(names: list[str]) -> Iterator[dict[str, str]]:
    """Fresh stores: SQLite in a temp dir, a real etcd (tests/servers) taking BATCH-op txns."""
    with ExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory())
        urls = {}
        if "sqlite" in names:
            urls["sqlite"] = f"sqlite:///{tmp}/registry.db"
        if "etcd" in names:
            from tests.servers.etcd import EtcdServer

            etcd = EtcdServer(["--max-txn-ops", str(BATCH), "--max-request-bytes", "8388608"])
            urls["etcd"] = stack.enter_context(etcd).url_for("bench")
        if "postgresql" in names:
            from tests.servers.postgres import PostgresServer

            urls["postgresql"] = stack.enter_context(PostgresServer()).create_database("bench")
        yield urls


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, int(len(ordered) * q) - 1)] if q < 1 else ordered[-1]


class Server:
    """The registry app under uvicorn in a thread with its own loop (as tests/api does)."""

    def __init__(self, url: str, data_dir: str) -> None:
        self.url, self.data_dir = url, data_dir
        self.port = 0
        self.registry: Registry | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._server: uvicorn.Server | None = None
        self._started = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    async def _main(self) -> None:
        from tests.api.conftest import free_port

        metrics = CollectorRegistry()
        protector = PassphraseProtector(b"benchmark-passphrase-0123")
        self.registry = await open_registry(self.url, protector, metrics)
        await bootstrap(self.registry, Path(self.data_dir), datetime.now(UTC))
        self.loop = asyncio.get_running_loop()
        self.port = free_port()
        config = uvicorn.Config(
            create_app(self.registry, metrics_registry=metrics),
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            access_log=False,
            lifespan="off",
        )
        self._server = uvicorn.Server(config)
        task = asyncio.create_task(self._server.serve())
        while not self._server.started and not task.done():
            await asyncio.sleep(0.01)
        self._started.set()
        await task
        await self.registry.store.close()

    def start(self) -> Server:
        self._thread.start()
        if not self._started.wait(60):
            raise RuntimeError("registry did not start")
        return self

    def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=600)

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        self._thread.join(30)


def timed(n: int, call: Callable[[], Any]) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        call()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def measure(backend: str, url: str, data_dir: str, args: argparse.Namespace) -> Result:
    print(f"== {backend}: {args.services} services", flush=True)
    server = Server(url, data_dir).start()
    try:
        registry = server.registry
        assert registry is not None
        token = (Path(data_dir) / "admin.token").read_text().strip()

        async def seed() -> float:
            t0 = time.perf_counter()
            ops = [
                Put(storage_key(ServiceExport.KIND, e.key), encode(e))
                for e in map(export, range(args.services))
            ]
            for i in range(0, len(ops), BATCH):
                await registry.store.commit(ops[i : i + BATCH])
            return time.perf_counter() - t0

        seed_s = server.run(seed())
        print(f"    seeded in {seed_s:.1f} s", flush=True)

        async def store_list() -> list[float]:
            out = []
            for _ in range(args.store_lists):
                t0 = time.perf_counter()
                await registry.store.exports.list()
                out.append((time.perf_counter() - t0) * 1000)
            return out

        store_times: list[float] = server.run(store_list())
        middle = f"ns-{NAMESPACES // 2:02d}/svc-{args.services // 2:05d}"
        scenarios = [
            Scenario("first page (limit=100)", "/api/v1/services", {"limit": "100"}),
            Scenario(
                "middle page (continue, limit=100)",
                "/api/v1/services",
                {"limit": "100", "continue": encode_token(middle)},
            ),
            Scenario(
                "namespace filter (limit=100)",
                "/api/v1/services",
                {"namespace": "ns-07", "limit": "100"},
            ),
            Scenario("largest page (limit=500)", "/api/v1/services", {"limit": "500"}),
        ]
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(
            base_url=f"http://127.0.0.1:{server.port}", headers=headers, timeout=60
        ) as client:
            for sc in scenarios:
                first = client.get(sc.path, params=sc.params)
                first.raise_for_status()
                sc.items = len(first.json()["items"])
                for _ in range(args.warmup):
                    client.get(sc.path, params=sc.params)
                lat = timed(args.requests, lambda sc=sc: client.get(sc.path, params=sc.params))
                sc.p50_ms, sc.p99_ms = statistics.median(lat), pct(lat, 0.99)
                print(
                    f"    {sc.name}: {sc.items} items, p50 {sc.p50_ms:.1f} ms, "
                    f"p99 {sc.p99_ms:.1f} ms",
                    flush=True,
                )
        return Result(
            backend,
            args.services,
            seed_s,
            statistics.median(store_times),
            pct(store_times, 0.99),
            scenarios,
        )
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.registry.rest")
    parser.add_argument("--backends", default="sqlite,etcd")
    parser.add_argument("--services", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=500, help="timed GETs per scenario")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--store-lists", type=int, default=50, help="timed direct store lists")
    args = parser.parse_args(argv)
    names = [n for n in args.backends.split(",") if n]
    results = []
    with store_urls(names) as urls:
        for name in names:
            with tempfile.TemporaryDirectory() as data_dir:
                results.append(measure(name, urls[name], data_dir, args))
    print()
    print("backend | request | items | p50 ms | p99 ms | store list of all exports p50 / p99 ms")
    for r in results:
        for sc in r.scenarios:
            print(
                f"{r.backend} | {sc.name} | {sc.items} | {sc.p50_ms:.1f} | {sc.p99_ms:.1f} | "
                f"{r.store_list_p50_ms:.1f} / {r.store_list_p99_ms:.1f}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
