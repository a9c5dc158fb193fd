"""Records and service results rendered as response dicts (matching `schemas`).

Why this module exists: what a response may contain is decided in one place, so
nothing secret (CA material, token digests) can reach a body by accident: each
view copies named fields rather than dumping a record.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from federation.model import ApiToken, AuditEvent, Cluster, Endpoint, Gateway, Link, Port
from federation.model.imports import ServiceImport
from federation.registry.records import ServiceSummary, Topology
from federation.store import Versioned


def cluster_out(v: Versioned[Cluster]) -> dict[str, Any]:
    return {**v.record.to_dict(), "revision": v.revision}


def link_out(v: Versioned[Link]) -> dict[str, Any]:
    return {**v.record.to_dict(), "revision": v.revision}


def gateway_out(v: Versioned[Gateway]) -> dict[str, Any]:
    return {**v.record.to_dict(), "revision": v.revision}


def ports_out(ports: tuple[Port, ...]) -> list[dict[str, Any]]:
    return [p.to_dict() for p in ports]


def endpoint_out(ep: Endpoint) -> dict[str, Any]:
    return {
        "address": ep.address,
        "ports": ports_out(ep.ports),
        "ready": ep.ready,
        "weight": ep.weight,
    }


def service_out(s: ServiceSummary) -> dict[str, Any]:
    return {
        "namespace": s.service.namespace,
        "name": s.service.name,
        "clusters": list(s.clusters),
        "ports": ports_out(s.ports),
        "conflicts": list(s.conflicts),
    }


def service_detail(s: ServiceSummary) -> dict[str, Any]:
    by_zone: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    health: dict[str, dict[str, int]] = {c: {"ready": 0, "total": 0} for c in s.clusters}
    for ep in sorted(s.endpoints, key=lambda e: e.key):
        by_zone[ep.cluster][ep.zone].append(endpoint_out(ep))
        counts = health.setdefault(ep.cluster, {"ready": 0, "total": 0})
        counts["total"] += 1
        counts["ready"] += int(ep.ready)
    return {
        **service_out(s),
        "exports": [
            {
                "cluster": e.cluster,
                "created": e.created,
                "ports": ports_out(e.ports),
                "scope": list(e.scope),
            }
            for e in s.exports
        ],
        "endpoints": {c: dict(zones) for c, zones in sorted(by_zone.items())},
        "health": health,
    }


def import_out(i: ServiceImport) -> dict[str, Any]:
    return {
        "namespace": i.service.namespace,
        "name": i.service.name,
        "ports": ports_out(i.ports),
        "clusters": list(i.clusters),
        "conflicts": list(i.conflicts),
        "endpoints": {
            c: [endpoint_out(ep) for ep in eps] for c, eps in i.endpoints_by_cluster().items()
        },
    }


def topology_out(t: Topology) -> dict[str, Any]:
    nodes = []
    for c in t.clusters:
        gw = t.gateways.get(c.name)
        nodes.append(
            {
                "name": c.name,
                "region": c.region,
                "zone": c.zone,
                "network": c.network,
                "trust_domain": c.trust_domain,
                "gateway_addresses": list(gw.addresses if gw else c.gateway_addresses),
                "gateway_healthy": gw.healthy if gw else None,
            }
        )
    edges = []
    for link in t.links:
        ready = link.condition("Ready")
        edges.append(
            {
                "a": link.a,
                "b": link.b,
                "bidirectional": link.bidirectional,
                "mode": link.mode,
                "ready": ready.status if ready else "Unknown",
                "conditions": [c.to_dict() for c in link.conditions],
            }
        )
    return {"nodes": nodes, "edges": edges}


def event_out(e: AuditEvent) -> dict[str, Any]:
    return e.to_dict()


def token_out(t: ApiToken) -> dict[str, Any]:
    """A token without its digest."""
    return {"name": t.name, "role": t.role, "created": t.created, "expires": t.expires}
