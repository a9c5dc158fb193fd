"""What each cluster imports: the pure merge of linked clusters' exports (MCS semantics).

A cluster C imports service ns/name when some cluster P linked to C (in the
direction P -> C) exports it, the link covers the namespace, and the export's
scope admits C. Exports of one service from several clusters merge into one
`ServiceImport` (KEP-1645 "namespace sameness"): ports are the union; when two
exports disagree on a port (same number and protocol, different name or app
protocol) the oldest export's definition wins and the import is flagged with a
conflict, as the MCS API's `Conflict` condition does.

No I/O and no clock: the registry's REST API and control plane feed it records
read from the store.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from federation.model import Endpoint, Link, Port, ServiceExport, ServiceKey


@dataclass(frozen=True, slots=True)
class ServiceImport:
    """One service as cluster `consumer` sees it."""

    consumer: str
    service: ServiceKey
    ports: tuple[Port, ...]
    clusters: tuple[str, ...]  # exporting clusters visible to the consumer, sorted
    conflicts: tuple[str, ...] = ()
    endpoints: tuple[Endpoint, ...] = ()

    def endpoints_by_cluster(self) -> dict[str, tuple[Endpoint, ...]]:
        grouped: dict[str, list[Endpoint]] = defaultdict(list)
        for ep in self.endpoints:
            grouped[ep.cluster].append(ep)
        return {c: tuple(eps) for c, eps in sorted(grouped.items())}


def visible(consumer: str, export: ServiceExport, links: Iterable[Link]) -> bool:
    """Does `consumer` see `export` through one of `links`?"""
    if export.cluster == consumer:
        return False
    if export.scope and consumer not in export.scope:
        return False
    return any(
        link.imports(consumer, export.cluster)
        and (not link.namespaces or export.namespace in link.namespaces)
        for link in links
    )


def merge_ports(exports: Iterable[ServiceExport]) -> tuple[tuple[Port, ...], tuple[str, ...]]:
    """Union of ports; the oldest export wins a disagreement, which is reported."""
    chosen: dict[tuple[int, str], tuple[Port, ServiceExport]] = {}
    conflicts: list[str] = []
    for export in sorted(exports, key=lambda e: (e.created, e.cluster)):
        for port in export.ports:
            slot = (port.port, port.protocol)
            held = chosen.get(slot)
            if held is None:
                chosen[slot] = (port, export)
            elif held[0] != port:
                conflicts.append(
                    f"port {port.port}/{port.protocol}: cluster {export.cluster} defines it as "
                    f"{_describe(port)}, cluster {held[1].cluster} (older export) as "
                    f"{_describe(held[0])}"
                )
    ports = tuple(p for _, (p, _) in sorted(chosen.items()))
    return ports, tuple(conflicts)


def _describe(port: Port) -> str:
    parts = [f"name={port.name or '-'}"]
    if port.app_protocol:
        parts.append(f"appProtocol={port.app_protocol}")
    return " ".join(parts)


def imports_for(
    consumer: str,
    links: Iterable[Link],
    exports: Iterable[ServiceExport],
    endpoints: Iterable[Endpoint] = (),
) -> dict[ServiceKey, ServiceImport]:
    """Every service `consumer` imports, with merged ports and visible endpoints."""
    links = tuple(links)
    by_service: dict[ServiceKey, list[ServiceExport]] = defaultdict(list)
    for export in exports:
        if visible(consumer, export, links):
            by_service[export.service].append(export)
    eps: dict[tuple[ServiceKey, str], list[Endpoint]] = defaultdict(list)
    for ep in endpoints:
        eps[(ep.service_key, ep.cluster)].append(ep)
    out: dict[ServiceKey, ServiceImport] = {}
    for key in sorted(by_service, key=str):
        group = by_service[key]
        ports, conflicts = merge_ports(group)
        clusters = tuple(sorted(e.cluster for e in group))
        found = tuple(
            ep for c in clusters for ep in sorted(eps.get((key, c), ()), key=lambda e: e.key)
        )
        out[key] = ServiceImport(consumer, key, ports, clusters, conflicts, found)
    return out
