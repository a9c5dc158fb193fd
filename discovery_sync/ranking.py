"""Which endpoints serve, and in what order: nearest first (pure).

Shared by the DNS answers and the EndpointSlices the Kubernetes sink writes, so
both leave out the same clusters and rank the rest alike. A cluster whose gateway
is known to be down, or an endpoint that is not ready, does not serve. Order:
endpoints in the caller's zone, then the caller's region, then the rest (the
gateway's egress ranks clusters the same way, docs/gateway.md), then by cluster
and address so answers are stable.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping

from discovery_sync.types import ClusterInfo, ImportedService, Locality
from federation.model import Endpoint


def tier(ep: Endpoint, cluster: ClusterInfo | None, caller: Locality) -> int:
    """0 same zone, 1 same region, 2 elsewhere (DESIGN.md "Failover").

    A cluster whose region is unknown (the registry's Watch carries no cluster
    localities) still ranks 0 on a zone match: zone names embed their region.
    """
    region = cluster.locality.region if cluster else ""
    same_region = not caller.region or not region or region == caller.region
    if caller.zone and ep.zone == caller.zone and same_region:
        return 0
    if caller.region and region == caller.region:
        return 1
    return 2


def endpoint_hostname(address: str) -> str:
    return address.replace(".", "-").replace(":", "-")


def serving_endpoints(
    svc: ImportedService, clusters: Mapping[str, ClusterInfo], caller: Locality
) -> list[Endpoint]:
    """Ready endpoints of clusters whose gateway is not down, nearest first."""
    ready = [ep for ep in svc.endpoints if ep.ready and cluster_up(clusters.get(ep.cluster))]
    return sorted(
        ready,
        key=lambda ep: (
            tier(ep, clusters.get(ep.cluster), caller),
            ep.cluster,
            _addr_key(ep.address),
        ),
    )


def cluster_up(info: ClusterInfo | None) -> bool:
    return info is None or info.gateway_healthy is not False


def _addr_key(address: str) -> tuple[int, int | str]:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return (2, address)
    return (ip.version, int(ip))
