"""Compile one cluster's imports into the `clusterset.local` zone (pure).

Names follow the MCS DNS specification (KEP-1645, "DNS", which mirrors the
Kubernetes DNS-Based Service Discovery spec for `cluster.local`):

- `<svc>.<ns>.svc.<zone>` A/AAAA: the cluster-set IPs of a ClusterSetIP import, or
  for a Headless import the ready endpoint addresses of every serving cluster;
- `<hostname>.<clusterid>.<svc>.<ns>.svc.<zone>` A/AAAA: one headless endpoint;
  endpoints carry no hostname in meshfed's records, so the hostname is the address
  with `.`/`:` turned into `-` (CoreDNS's convention for endpoints without one);
- `_<port>._<proto>.<svc>.<ns>.svc.<zone>` SRV for each named port;
- `dns-version.<zone>` TXT "1.0.0" (schema version of the spec).

A cluster whose gateway is known to be down, or that has no ready endpoint for a
service, is left out of that service's answers. What remains is ordered nearest
first from the caller's locality: endpoints in the caller's zone, then the
caller's region, then the rest (the gateway's egress ranks the same way); SRV
priorities carry those tiers. Empty non-terminals (`svc.<zone>`, `<ns>.svc.<zone>`,
`<cluster>.<svc>.<ns>.svc.<zone>`, `_<proto>.<svc>...`) exist so that they answer
NODATA rather than NXDOMAIN (RFC 8020).
"""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.SOA
import dns.rrset

from discovery_sync.ranking import endpoint_hostname, serving_endpoints, tier
from discovery_sync.types import ClusterInfo, ImportedService, ImportView, Locality
from federation.model import Endpoint

ZONE = "clusterset.local."
DNS_VERSION = "1.0.0"  # MCS DNS spec: schema version served in dns-version TXT
TTL = 5  # seconds; CoreDNS's kubernetes/multicluster plugins default to 5
MAX_SRV_WEIGHT = 65535  # RFC 2782: weight is a 16-bit unsigned integer
# SOA timers (RFC 1035 section 3.3.13); minimum doubles as negative TTL (RFC 2308 s.4).
SOA_REFRESH, SOA_RETRY, SOA_EXPIRE = 7200, 1800, 86400

RRsets = dict[dns.rdatatype.RdataType, dns.rrset.RRset]


@dataclass(frozen=True, slots=True)
class ZoneData:
    """Every name of the zone (lowercase, absolute) with its RRsets."""

    origin: dns.name.Name
    nodes: dict[dns.name.Name, RRsets] = field(default_factory=dict)
    # Records to put in the additional section for an SRV target (RFC 2782).
    glue: dict[dns.name.Name, tuple[dns.rrset.RRset, ...]] = field(default_factory=dict)
    soa: dns.rrset.RRset | None = None
    serial: int = 0


def _rdtype_for(address: str) -> dns.rdatatype.RdataType | None:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None  # a DNS-name endpoint: no A/AAAA to give
    return dns.rdatatype.A if ip.version == 4 else dns.rdatatype.AAAA


class _Builder:
    def __init__(self, origin: dns.name.Name) -> None:
        self.origin = origin
        self.nodes: dict[dns.name.Name, RRsets] = {}
        self.glue: dict[dns.name.Name, tuple[dns.rrset.RRset, ...]] = {}

    def name(self, *labels: str) -> dns.name.Name:
        return dns.name.Name([*(lbl.lower().encode() for lbl in labels), *self.origin.labels])

    def node(self, name: dns.name.Name) -> RRsets:
        # Make every ancestor up to the origin exist (empty non-terminals).
        parent = name
        while parent != self.origin and len(parent) > len(self.origin):
            self.nodes.setdefault(parent, {})
            parent = parent.parent()
        return self.nodes.setdefault(name, {})

    def add(self, name: dns.name.Name, rdtype: dns.rdatatype.RdataType, text: str) -> None:
        rrsets = self.node(name)
        rrset = rrsets.get(rdtype)
        if rrset is None:
            rrset = rrsets[rdtype] = dns.rrset.RRset(name, dns.rdataclass.IN, rdtype)
            rrset.update_ttl(TTL)
        rrset.add(dns.rdata.from_text(dns.rdataclass.IN, rdtype, text), TTL)


def compile_zone(
    view: ImportView, caller: Locality, zone: str = ZONE, *, nameserver: str = "ns.dns"
) -> ZoneData:
    """Every name the server answers for, given the imports and the caller's locality."""
    origin = dns.name.from_text(zone).canonicalize()
    b = _Builder(origin)
    ns_name = b.name(*nameserver.split("."))
    serial = view.revision % 2**32  # RFC 1982 serial arithmetic: 32 bits
    soa_text = (
        f"{ns_name.to_text()} hostmaster.{origin.to_text()} {serial} "
        f"{SOA_REFRESH} {SOA_RETRY} {SOA_EXPIRE} {TTL}"
    )
    b.add(origin, dns.rdatatype.SOA, soa_text)
    b.add(origin, dns.rdatatype.NS, ns_name.to_text())
    b.add(b.name("dns-version"), dns.rdatatype.TXT, f'"{DNS_VERSION}"')
    clusters = dict(view.clusters)
    for key in sorted(view.services, key=str):
        _service(b, view.services[key], clusters, caller)
    soa = b.nodes[origin][dns.rdatatype.SOA]
    return ZoneData(origin, b.nodes, b.glue, soa, serial)


def _service(
    b: _Builder, svc: ImportedService, clusters: dict[str, ClusterInfo], caller: Locality
) -> None:
    base = b.name(svc.service.name, svc.service.namespace, "svc")
    b.node(base)
    eps = serving_endpoints(svc, clusters, caller)
    if not svc.headless:
        if eps:  # no serving cluster: the name exists but has no address (NODATA)
            for ip in svc.ips:
                rdtype = _rdtype_for(ip)
                if rdtype is not None:
                    b.add(base, rdtype, ip)
        glue = tuple(b.nodes[base].values())
        for port in svc.ports:
            if port.name:
                srv = b.name(
                    f"_{port.name}",
                    f"_{port.protocol.lower()}",
                    svc.service.name,
                    svc.service.namespace,
                    "svc",
                )
                if eps and svc.ips:
                    b.add(srv, dns.rdatatype.SRV, f"0 100 {port.port} {base.to_text()}")
                    b.glue[srv] = glue
                else:
                    b.node(srv)
        return
    by_host: dict[dns.name.Name, Endpoint] = {}
    for ep in eps:
        rdtype = _rdtype_for(ep.address)
        if rdtype is None:
            continue
        b.add(base, rdtype, ep.address)
        host = b.name(
            endpoint_hostname(ep.address),
            ep.cluster,
            svc.service.name,
            svc.service.namespace,
            "svc",
        )
        b.add(host, rdtype, ep.address)
        by_host[host] = ep
    srv_glue: dict[dns.name.Name, list[dns.rrset.RRset]] = defaultdict(list)
    for port in svc.ports:
        if not port.name:
            continue
        srv = b.name(
            f"_{port.name}",
            f"_{port.protocol.lower()}",
            svc.service.name,
            svc.service.namespace,
            "svc",
        )
        b.node(srv)
        for host, ep in by_host.items():
            target = next((p for p in ep.ports if p.name == port.name), None)
            if target is None and len(ep.ports) == 1 and len(svc.ports) == 1:
                target = ep.ports[0]
            if target is None:
                continue
            prio = tier(ep, clusters.get(ep.cluster), caller)
            weight = min(ep.weight, MAX_SRV_WEIGHT)
            b.add(srv, dns.rdatatype.SRV, f"{prio} {weight} {target.port} {host.to_text()}")
            srv_glue[srv].extend(b.nodes[host].values())
    for srv, rrsets in srv_glue.items():
        b.glue[srv] = tuple(rrsets)


def names(data: ZoneData) -> Iterable[str]:
    """Every owner name in the zone, for tests and `--dump`."""
    return sorted(n.to_text() for n in data.nodes)
