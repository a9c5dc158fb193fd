"""EndpointSlice propagation: a change in cluster B's API to the slice written in A.

Everything real but the API servers: two fake Kubernetes API servers
(tests/fakekube, real HTTP), the registry's control plane with its SQLite store,
two `Agent`s (B exports with the Kubernetes source, A imports with the
Kubernetes sink), all on loopback in one process (after the initial sync the
heap is frozen out of the cyclic GC's scans, as separate processes would keep the
fakes' and the registry's objects out of the agents' collections). B exports 1,000 services
(2 endpoints each); once A holds all of them, one EndpointSlice of B at a time
gets a new address, and the time until A's store holds that address in the
imported slice is recorded. Reported: p50/p90/p99/max over the samples
(target p99 < 200 ms).

    .venv/bin/python -m benchmarks.discovery.propagation [--services 1000] [--samples 100]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import random
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubernetes import client

from discovery_sync.agent import Agent, AgentConfig
from discovery_sync.kube import plan
from discovery_sync.types import Locality
from tests.discovery.registry_fixture import CLUSTERS, registry
from tests.fakekube import FakeKube

NS = "bench"


def seed(kube: FakeKube, services: int) -> None:
    store = kube.store
    store.create(store.type("", "v1", "namespaces"), "", {"metadata": {"name": NS}})
    svc_t = store.type("", "v1", "services")
    eps_t = store.type("discovery.k8s.io", "v1", "endpointslices")
    exp_t = store.type("multicluster.x-k8s.io", "v1alpha1", "serviceexports")
    for i in range(services):
        name = f"svc{i}"
        store.create(
            svc_t,
            NS,
            {"metadata": {"name": name}, "spec": {"ports": [{"name": "http", "port": 80}]}},
        )
        store.create(
            eps_t,
            NS,
            slice_body(name, [f"10.{i // 250}.{i % 250}.1", f"10.{i // 250}.{i % 250}.2"]),
        )
        store.create(exp_t, NS, {"metadata": {"name": name}})


def slice_body(name: str, addresses: list[str]) -> dict[str, Any]:
    return {
        "metadata": {"name": f"{name}-x", "labels": {"kubernetes.io/service-name": name}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": [
            {"addresses": [a], "conditions": {"ready": True}, "zone": "z"} for a in addresses
        ],
    }


def holds(kube: FakeKube, service: str, address: str) -> bool:
    slices = kube.store.objects.get(("discovery.k8s.io", "endpointslices"), {})
    return any(
        s["metadata"]["labels"].get(plan.SERVICE_NAME_LABEL) == service
        and any(e["addresses"][0] == address for e in s["endpoints"])
        for (ns, _), s in slices.items()
        if ns == NS
    )


def imported(kube: FakeKube) -> int:
    return len(kube.store.objects.get(("multicluster.x-k8s.io", "serviceimports"), {}))


def wait_for(kube: FakeKube, service: str, address: str, timeout: float) -> float | None:
    """Blocks (in a thread) until A's store holds the address; returns when it did."""
    store = kube.store
    with store.changed:
        ok = store.changed.wait_for(lambda: holds(kube, service, address), timeout)
    return time.perf_counter() if ok else None


def _wait(result: list[float | None], kube: FakeKube, service: str, address: str) -> None:
    result.append(wait_for(kube, service, address, 10))


async def run(services: int, samples: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        async with registry(tmp) as reg:
            fakes = {"bookmark_interval": 5, "max_history": 5000}
            with FakeKube(**fakes) as kube_b, FakeKube(**fakes) as kube_a:  # type: ignore[arg-type]
                seed(kube_b, services)
                kube_a.store.create(
                    kube_a.store.type("", "v1", "namespaces"), "", {"metadata": {"name": NS}}
                )
                agents = []
                for name, kube in (("west", kube_b), ("east", kube_a)):
                    kc = tmp / f"{name}.kubeconfig"
                    kc.write_text(kube.kubeconfig_yaml())
                    agents.append(
                        Agent(
                            AgentConfig(
                                cluster=name,
                                registry=reg.plane.address,
                                join_address=reg.plane.join_address,
                                join_token=await reg.token(name),
                                trust_domain=CLUSTERS[name].trust_domain,
                                registry_ca=await reg.bundle(),
                                kubeconfig=str(kc),
                                locality=Locality(CLUSTERS[name].region, CLUSTERS[name].zone),
                            )
                        )
                    )
                tasks = [asyncio.create_task(a.run()) for a in agents]
                start = time.perf_counter()
                while imported(kube_a) < services:
                    await asyncio.sleep(0.1)
                    if time.perf_counter() - start > 300:
                        raise RuntimeError(f"only {imported(kube_a)} imports after 300 s")
                initial = time.perf_counter() - start
                await asyncio.sleep(1.0)
                # The API servers and the registry share this process only because this
                # is a benchmark: keep their heaps out of the agents' GC scans, as
                # separate processes would (the agents freeze their own state too).
                gc.collect()
                gc.freeze()
                disc = client.DiscoveryV1Api(client.ApiClient(kube_b.kube_config()))
                rng = random.Random(6)
                latencies = []
                for n in range(samples):
                    i = rng.randrange(services)
                    name, new = f"svc{i}", f"10.200.{n // 250}.{n % 250}"
                    result: list[float | None] = []
                    waiter = threading.Thread(target=_wait, args=(result, kube_a, name, new))
                    waiter.start()
                    t0 = time.perf_counter()
                    await asyncio.to_thread(
                        disc.replace_namespaced_endpoint_slice,
                        f"{name}-x",
                        NS,
                        slice_body(name, [f"10.{i // 250}.{i % 250}.1", new]),
                    )
                    await asyncio.to_thread(waiter.join)
                    if result[0] is None:
                        raise RuntimeError(f"sample {n}: {name} never reached cluster A")
                    latencies.append((result[0] - t0) * 1000)
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
    latencies.sort()

    def pct(p: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(p * len(latencies)))], 1)

    return {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "services": services,
        "samples": samples,
        "initial_sync_s": round(initial, 2),
        "p50_ms": pct(0.5),
        "p90_ms": pct(0.9),
        "p99_ms": pct(0.99),
        "max_ms": round(latencies[-1], 1),
        "mean_ms": round(statistics.mean(latencies), 1),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--services", type=int, default=1000)
    p.add_argument("--samples", type=int, default=100)
    args = p.parse_args(argv)
    print(json.dumps(asyncio.run(run(args.services, args.samples)), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
