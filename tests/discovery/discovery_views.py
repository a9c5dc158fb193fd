"""Import views for DNS tests: three clusters in two regions, services of each kind."""

from __future__ import annotations

from datetime import UTC, datetime

from discovery_sync.types import ClusterInfo, ImportedService, ImportView, Locality
from federation.model import Endpoint, Port, ServiceKey

T0 = datetime(2026, 1, 1, tzinfo=UTC)
HTTP = Port(8080, "TCP", "http")
CALLER = Locality("us-east", "us-east-1a")


def ep(
    cluster: str,
    ns: str,
    svc: str,
    addr: str,
    zone: str,
    *,
    ready: bool = True,
    port: int = 9000,
    weight: int = 1,
) -> Endpoint:
    return Endpoint(cluster, ns, svc, addr, (Port(port, "TCP", "http"),), zone, ready, weight)


def clusters(**health: bool | None) -> dict[str, ClusterInfo]:
    base = {
        "east": ClusterInfo("east", Locality("us-east", "us-east-1a"), None, ("192.0.2.1:15443",)),
        "east2": ClusterInfo(
            "east2", Locality("us-east", "us-east-1b"), None, ("192.0.2.2:15443",)
        ),
        "west": ClusterInfo("west", Locality("us-west", "us-west-1a"), None, ("192.0.2.3:15443",)),
    }
    for name, healthy in health.items():
        if name in base:
            base[name] = ClusterInfo(
                name, base[name].locality, healthy, base[name].gateway_addresses
            )
    return base


def view(*services: ImportedService, revision: int = 7, **health: bool | None) -> ImportView:
    return ImportView("local", {s.service: s for s in services}, clusters(**health), revision)


def headless(name: str = "db", ns: str = "demo", eps: tuple[Endpoint, ...] = ()) -> ImportedService:
    if not eps:
        eps = (
            ep("west", ns, name, "10.3.0.1", "us-west-1a"),
            ep("east2", ns, name, "10.2.0.1", "us-east-1b"),
            ep("east", ns, name, "10.1.0.1", "us-east-1a"),
            ep("east", ns, name, "10.1.0.2", "us-east-1a", ready=False),
        )
    clusters_ = tuple(sorted({e.cluster for e in eps}))
    return ImportedService(ServiceKey(ns, name), (HTTP,), clusters_, eps, headless=True)


def clusterset(
    name: str = "echo",
    ns: str = "demo",
    ips: tuple[str, ...] = ("198.18.0.10",),
    eps: tuple[Endpoint, ...] = (),
) -> ImportedService:
    if not eps:
        eps = (ep("west", ns, name, "10.3.0.5", "us-west-1a"),)
    clusters_ = tuple(sorted({e.cluster for e in eps}))
    return ImportedService(ServiceKey(ns, name), (HTTP,), clusters_, eps, ips=ips)
