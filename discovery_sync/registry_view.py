"""Between the registry client's records and the discovery package's (pure).

`import_view` turns what `federation.client` follows (`WatchView`: imports with
merged ports, conflicts and visible endpoints, links, gateways) into the
`ImportView` the sinks and the DNS server consume, allocating cluster-set IPs;
`slice_targets` reads each link's mode (passthrough links point EndpointSlices
straight at the peer's gateway); `export_delta` is what the agent streams after
its full state: the services whose records changed and those no longer exported.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping

from discovery_sync.ipam import allocate
from discovery_sync.kube.plan import SliceTargets
from discovery_sync.types import ClusterInfo, ImportedService, ImportView, Locality, LocalService
from federation.client import WatchView
from federation.model import ServiceKey

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def import_view(
    cluster: str,
    watch: WatchView,
    cidr: Network,
    *,
    previous: ImportView | None = None,
    headless: frozenset[ServiceKey] = frozenset(),
) -> ImportView:
    items = watch.items
    clusters: dict[str, ClusterInfo] = {}
    for name, gw in items.gateways.items():
        clusters[name] = ClusterInfo(name, Locality(), gw.healthy, tuple(gw.addresses))
    held_ips = {k: s.ips[0] for k, s in (previous.services.items() if previous else ()) if s.ips}
    ips = allocate((k for k in items.imports if k not in headless), cidr, held_ips)
    services = {
        key: ImportedService(
            key,
            imp.ports,
            imp.clusters,
            imp.endpoints,
            key in headless,
            () if key in headless else (ips[key],),
            imp.conflicts,
        )
        for key, imp in items.imports.items()
    }
    return ImportView(cluster, services, clusters, watch.revision)


def slice_targets(
    cluster: str, watch: WatchView, egress_addresses: tuple[str, ...], local: Locality
) -> SliceTargets:
    per_cluster = {}
    for link in watch.items.links.values():
        if link.mode == "passthrough" and cluster in (link.a, link.b):
            per_cluster[link.b if link.a == cluster else link.a] = "passthrough"
    return SliceTargets(egress_addresses, per_cluster, local)


def export_delta(
    old: Mapping[ServiceKey, LocalService], new: Mapping[ServiceKey, LocalService]
) -> tuple[list[LocalService], list[ServiceKey]]:
    """(changed or new services, removed keys) between two source states."""
    upserted = [svc for key, svc in new.items() if old.get(key) != svc]
    removed = [key for key in old if key not in new]
    return upserted, removed
