"""Two fake clusters joined the way the agent joins them, minus the registry.

Cluster B's API server -> `KubeSource` -> `federation.model.imports.imports_for` (the
registry's own merge) -> an `ImportView` for cluster A -> `KubeSink` -> cluster A's
API server. Used by the Kubernetes tests and the propagation benchmark.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from kubernetes import client

from discovery_sync.ipam import DEFAULT_CIDR, allocate, parse_cidr
from discovery_sync.kube.api import KubeApi
from discovery_sync.kube.plan import SliceTargets
from discovery_sync.kube.sink import KubeSink
from discovery_sync.kube.source import KubeSource
from discovery_sync.types import ClusterInfo, ImportedService, ImportView, Locality, LocalService
from federation.model import Link, ServiceKey
from federation.model.imports import imports_for
from tests.fakekube import FakeKube

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def kube_api(kube: FakeKube) -> KubeApi:
    return KubeApi(client.ApiClient(kube.kube_config()))


def build_view(
    consumer: str,
    exports: Mapping[str, Mapping[ServiceKey, LocalService]],
    revision: int = 1,
    previous_ips: Mapping[ServiceKey, str] | None = None,
) -> ImportView:
    links = [Link(consumer, other) for other in exports if other != consumer]
    locals_ = [ls for per in exports.values() for ls in per.values()]
    merged = imports_for(
        consumer,
        links,
        [ls.export for ls in locals_],
        [ep for ls in locals_ for ep in ls.endpoints],
    )
    headless = {ls.key for ls in locals_ if ls.headless}
    ips = allocate(merged, parse_cidr(DEFAULT_CIDR), previous_ips)
    services = {
        key: ImportedService(
            key,
            imp.ports,
            imp.clusters,
            imp.endpoints,
            key in headless,
            () if key in headless else (ips[key],),
            imp.conflicts,
            tuple(ls.export for ls in locals_ if ls.key == key),
        )
        for key, imp in merged.items()
    }
    clusters = {c: ClusterInfo(c, Locality("r", f"{c}-z")) for c in exports}
    return ImportView(consumer, services, clusters, revision)


class Pipeline:
    """B's exports flow into A's API server; `applied` counts views applied."""

    def __init__(self, b: FakeKube, a: FakeKube, *, watch_timeout: int = 30) -> None:
        self.revision = 0
        self.applied = 0
        self.b_exports: Mapping[ServiceKey, LocalService] = {}
        self.sink = KubeSink(kube_api(a), SliceTargets(), resync_period=3600)
        self.source = KubeSource(
            kube_api(b),
            self._on_change,
            cluster="b",
            default_zone="b-z",
            watch_timeout=watch_timeout,
        )
        self.task: asyncio.Task[None] | None = None
        self.changed_at: list[float] = []

    async def _on_change(self, exports: Mapping[ServiceKey, LocalService]) -> None:
        self.b_exports = exports
        self.revision += 1
        await self.sink.apply(build_view("a", {"b": exports}, self.revision))
        self.applied += 1
        self.changed_at.append(time.monotonic())

    def start(self) -> Pipeline:
        self.task = asyncio.create_task(self.source.run())
        return self

    async def stop(self) -> None:
        self.source.stop()
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task


async def eventually(check: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
            if result:
                return result
        except AssertionError:
            if time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met in {timeout}s: {check}")
        await asyncio.sleep(0.02)


def seed(
    kube: FakeKube,
    ns: str,
    name: str,
    addresses: list[str],
    *,
    export: bool = True,
    port: int = 8080,
    ready: bool = True,
) -> None:
    """A namespace, a Service, an EndpointSlice and (optionally) a ServiceExport."""
    api = client.ApiClient(kube.kube_config())
    core, disc = client.CoreV1Api(api), client.DiscoveryV1Api(api)
    custom = client.CustomObjectsApi(api)
    if ns not in [n.metadata.name for n in core.list_namespace().items]:
        core.create_namespace({"metadata": {"name": ns}})
    core.create_namespaced_service(
        ns,
        {
            "metadata": {"name": name},
            "spec": {"ports": [{"name": "http", "port": 80, "protocol": "TCP"}]},
        },
    )
    disc.create_namespaced_endpoint_slice(ns, slice_body(name, addresses, port, ready))
    if export:
        custom.create_namespaced_custom_object(
            "multicluster.x-k8s.io",
            "v1alpha1",
            ns,
            "serviceexports",
            {
                "apiVersion": "multicluster.x-k8s.io/v1alpha1",
                "kind": "ServiceExport",
                "metadata": {"name": name},
            },
        )
    api.close()


def slice_body(
    name: str, addresses: list[str], port: int = 8080, ready: bool = True
) -> dict[str, Any]:
    return {
        "metadata": {"name": f"{name}-abcde", "labels": {"kubernetes.io/service-name": name}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
        "endpoints": [
            {"addresses": [a], "conditions": {"ready": ready}, "zone": "b-z1"} for a in addresses
        ],
    }
