"""What the Kubernetes sink should hold, and the writes that get it there (pure).

For every imported service: one MCS `ServiceImport` (v1alpha1; type ClusterSetIP
or Headless; the merged ports; the cluster-set IPs; `status.clusters` naming the
exporting clusters) and, per exporting cluster, EndpointSlices labelled
`multicluster.kubernetes.io/service-name` and `multicluster.kubernetes.io/source-
cluster` (MCS KEP-1645) plus `app.kubernetes.io/managed-by=meshfed`, which is how
the orphan sweep finds what meshfed wrote and nothing else.

Where a slice's endpoints point depends on the link (`SliceTargets`):
- `egress` (default when the local gateway's egress address is known): the local
  gateway, which picks the healthiest nearest cluster per connection;
- `passthrough`: straight at the exporting cluster's gateway (port 15443, SNI
  names the service);
- `direct`: the exporting cluster's endpoint addresses (flat networks, tests).

`diff` compares desired objects with what the API server holds, field by field on
what meshfed owns, so applying the same view twice writes nothing.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from discovery_sync.kube.api import ENDPOINT_SLICES, SERVICE_IMPORTS
from discovery_sync.ranking import serving_endpoints
from discovery_sync.types import ImportedService, ImportView, Locality
from federation.model import Port

Obj = dict[str, Any]
ObjKey = tuple[str, str]

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "meshfed"
SERVICE_NAME_LABEL = "multicluster.kubernetes.io/service-name"
SOURCE_CLUSTER_LABEL = "multicluster.kubernetes.io/source-cluster"
SLICE_MANAGER_LABEL = "endpointslice.kubernetes.io/managed-by"  # discovery.k8s.io/v1
SLICE_MANAGER = "agent.meshfed.io"  # a label value: no "/" allowed
MANAGED_SELECTOR = f"{MANAGED_BY_LABEL}={MANAGED_BY}"
MAX_ENDPOINTS_PER_SLICE = 100  # kube-controller-manager's --max-endpoints-per-slice default
GATEWAY_PORT = 15443  # east-west gateway's ingress port (DESIGN.md "Traffic")
MODES = ("egress", "passthrough", "direct")


@dataclass(frozen=True, slots=True)
class SliceTargets:
    """Where imported EndpointSlices point, per exporting cluster."""

    egress_addresses: tuple[str, ...] = ()
    per_cluster: Mapping[str, str] = field(default_factory=dict)  # cluster -> mode
    local: Locality = field(default_factory=Locality)

    def mode(self, cluster: str) -> str:
        default = "egress" if self.egress_addresses else "direct"
        return self.per_cluster.get(cluster, default)


def _labels(svc: ImportedService, cluster: str | None = None) -> dict[str, str]:
    out = {MANAGED_BY_LABEL: MANAGED_BY, SERVICE_NAME_LABEL: svc.service.name}
    if cluster is not None:
        out[SOURCE_CLUSTER_LABEL] = cluster
        out[SLICE_MANAGER_LABEL] = SLICE_MANAGER
    return out


def _port(p: Port) -> Obj:
    out: Obj = {"port": p.port, "protocol": p.protocol}
    if p.name:
        out["name"] = p.name
    if p.app_protocol:
        out["appProtocol"] = p.app_protocol
    return out


def service_import(svc: ImportedService) -> Obj:
    spec: Obj = {"type": svc.type, "ports": [_port(p) for p in svc.ports]}
    if not svc.headless and svc.ips:
        spec["ips"] = list(svc.ips[:2])  # the CRD allows one address per family
    return {
        "apiVersion": SERVICE_IMPORTS.api_version,
        "kind": SERVICE_IMPORTS.kind,
        "metadata": {
            "name": svc.service.name,
            "namespace": svc.service.namespace,
            "labels": _labels(svc),
        },
        "spec": spec,
    }


def import_status(svc: ImportedService) -> Obj:
    return {"clusters": [{"cluster": c} for c in sorted(svc.clusters)]}


def _family(address: str) -> str | None:
    try:
        return "IPv4" if ipaddress.ip_address(address).version == 4 else "IPv6"
    except ValueError:
        return None


def _slice_name(svc: ImportedService, cluster: str, family: str, index: int) -> str:
    digest = hashlib.sha256(f"{svc.service}/{cluster}/{family}".encode()).hexdigest()[:8]
    stem = f"{svc.service.name}-{cluster}"[:200]
    return f"{stem}-{digest}-{index}"


@dataclass(frozen=True, slots=True)
class _Entry:
    address: str
    ready: bool
    zone: str
    ports: tuple[Port, ...]


def _entries(
    svc: ImportedService, cluster: str, view: ImportView, targets: SliceTargets
) -> list[_Entry]:
    eps = [e for e in svc.endpoints if e.cluster == cluster]
    info = view.clusters.get(cluster)
    mode = targets.mode(cluster)
    if mode == "direct":
        up = info is None or info.gateway_healthy is not False
        return [_Entry(e.address, e.ready and up, e.zone, e.ports) for e in eps]
    serving = bool(
        serving_endpoints(
            ImportedService(svc.service, svc.ports, (cluster,), tuple(eps)),
            view.clusters,
            targets.local,
        )
    )
    if mode == "passthrough":
        addrs = [a.rsplit(":", 1)[0].strip("[]") for a in (info.gateway_addresses if info else ())]
        zone = info.locality.zone if info and info.locality.zone else "unknown"
        ports = tuple(Port(GATEWAY_PORT, p.protocol, p.name, p.app_protocol) for p in svc.ports)
        return [_Entry(a, serving, zone, ports) for a in addrs if _family(a)]
    zone = targets.local.zone or "unknown"
    return [_Entry(a, serving, zone, svc.ports) for a in targets.egress_addresses]


def endpoint_slices(
    svc: ImportedService, view: ImportView, targets: SliceTargets
) -> dict[ObjKey, Obj]:
    out: dict[ObjKey, Obj] = {}
    ns = svc.service.namespace
    for cluster in sorted(svc.clusters):
        groups: dict[tuple[str, tuple[Port, ...]], list[_Entry]] = defaultdict(list)
        for entry in _entries(svc, cluster, view, targets):
            family = _family(entry.address)
            if family is not None:
                groups[(family, entry.ports)].append(entry)
        index: dict[str, int] = defaultdict(int)
        for (family, ports), entries in sorted(
            groups.items(), key=lambda kv: (kv[0][0], str(kv[0][1]))
        ):
            entries.sort(key=lambda e: e.address)
            for start in range(0, len(entries), MAX_ENDPOINTS_PER_SLICE):
                chunk = entries[start : start + MAX_ENDPOINTS_PER_SLICE]
                name = _slice_name(svc, cluster, family, index[family])
                index[family] += 1
                out[(ns, name)] = {
                    "apiVersion": ENDPOINT_SLICES.api_version,
                    "kind": ENDPOINT_SLICES.kind,
                    "metadata": {"name": name, "namespace": ns, "labels": _labels(svc, cluster)},
                    "addressType": family,
                    "ports": [_port(p) for p in ports],
                    "endpoints": [
                        {"addresses": [e.address], "conditions": {"ready": e.ready}, "zone": e.zone}
                        for e in chunk
                    ],
                }
    return out


@dataclass(frozen=True, slots=True)
class Desired:
    imports: dict[ObjKey, Obj]
    import_status: dict[ObjKey, Obj]
    slices: dict[ObjKey, Obj]


def desired(view: ImportView, targets: SliceTargets) -> Desired:
    imports: dict[ObjKey, Obj] = {}
    status: dict[ObjKey, Obj] = {}
    slices: dict[ObjKey, Obj] = {}
    for key in sorted(view.services, key=str):
        svc = view.services[key]
        k = (key.namespace, key.name)
        imports[k] = service_import(svc)
        status[k] = import_status(svc)
        slices.update(endpoint_slices(svc, view, targets))
    return Desired(imports, status, slices)


# --- diff ------------------------------------------------------------------------------

_CONTENT = ("spec", "addressType", "ports", "endpoints")


def same(want: Mapping[str, Any], have: Mapping[str, Any]) -> bool:
    """Does `have` already hold everything meshfed owns in `want`?"""
    labels = (have.get("metadata") or {}).get("labels") or {}
    if any(labels.get(k) != v for k, v in want["metadata"]["labels"].items()):
        return False
    return all(normalize(want.get(f)) == normalize(have.get(f)) for f in _CONTENT)


def normalize(value: Any) -> Any:
    """Compare modulo server defaults (protocol TCP) and absent-vs-empty."""
    if isinstance(value, dict):
        return {k: normalize(v) for k, v in value.items() if v not in (None, [], {}, "")}
    if isinstance(value, list):
        return [normalize(v) for v in value]
    return value


@dataclass(frozen=True, slots=True)
class Write:
    verb: str  # create, replace, delete
    key: ObjKey
    body: Obj | None = None


def diff(want: Mapping[ObjKey, Obj], have: Mapping[ObjKey, Obj]) -> list[Write]:
    """Writes that turn `have` (meshfed-managed objects only) into `want`."""
    writes: list[Write] = []
    for key, body in want.items():
        current = have.get(key)
        if current is None:
            writes.append(Write("create", key, body))
        elif not same(body, current):
            merged = dict(body)
            meta = dict(body["metadata"])
            old_meta = current.get("metadata") or {}
            meta["labels"] = {**(old_meta.get("labels") or {}), **meta["labels"]}
            meta["resourceVersion"] = old_meta.get("resourceVersion")
            merged["metadata"] = meta
            writes.append(Write("replace", key, merged))
    writes.extend(Write("delete", key) for key in sorted(set(have) - set(want)))
    return writes


def managed(objs: Iterable[Obj]) -> dict[ObjKey, Obj]:
    out = {}
    for obj in objs:
        meta = obj.get("metadata") or {}
        if (meta.get("labels") or {}).get(MANAGED_BY_LABEL) == MANAGED_BY:
            out[(str(meta.get("namespace", "")), str(meta.get("name", "")))] = obj
    return out
