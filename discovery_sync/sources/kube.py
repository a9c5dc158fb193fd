"""Kubernetes objects -> meshfed exports: the pure half of the Kubernetes source.

Input is the JSON the API server serves (camelCase dicts, as listed or watched);
output is one `LocalService` per exported Service plus the status conditions each
MCS ServiceExport object should carry. A Service is exported when a ServiceExport
of the same name exists (MCS, KEP-1645) or, for Linkerd compatibility, when it is
labelled `mirror.linkerd.io/exported=true` (or `meshfed.io/exported=true`).

EndpointSlices (discovery.k8s.io/v1) belong to a Service through the
`kubernetes.io/service-name` label. An endpoint counts as ready only when
`conditions.ready` is true; its zone is the endpoint's `zone`, or the cluster's
zone when the slice does not say. FQDN slices are skipped: DNS answers and the
gateway need addresses.

One bad object never stops the others: it is left out and reported as a problem
naming the object and the field.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from discovery_sync.errors import SourceError
from discovery_sync.types import LocalService
from federation.errors import ValidationError
from federation.model import Condition, Endpoint, Port, ServiceExport, ServiceKey

Obj = Mapping[str, Any]

EXPORT_LABELS = ("mirror.linkerd.io/exported", "meshfed.io/exported")
SERVICE_NAME_LABEL = "kubernetes.io/service-name"  # EndpointSlice -> its Service
ADDRESS_TYPES = ("IPv4", "IPv6")  # discovery.k8s.io/v1 AddressType, less FQDN

# MCS ServiceExport condition types and reasons (mcs-api v1alpha1 serviceexport.go).
VALID, READY, CONFLICT = "Valid", "Ready", "Conflict"
REASON_VALID = "Valid"
REASON_NO_SERVICE = "NoService"
REASON_INVALID_TYPE = "InvalidServiceType"
REASON_NO_CONFLICTS = "NoConflicts"
REASON_PORT_CONFLICT = "PortConflict"
REASON_READY = "Ready"
REASON_PENDING = "Pending"


@dataclass(frozen=True, slots=True)
class NamespaceFilter:
    """Which namespaces the source looks at: `include` empty means all."""

    include: frozenset[str] = frozenset()
    exclude: frozenset[str] = frozenset()

    def admits(self, namespace: str) -> bool:
        if namespace in self.exclude:
            return False
        return not self.include or namespace in self.include


@dataclass(frozen=True, slots=True)
class Translation:
    """The result of one translation: exported services and what was wrong."""

    services: Mapping[ServiceKey, LocalService]
    problems: tuple[str, ...] = ()
    # ServiceExport objects (ns, name) -> the Valid condition they should carry.
    validity: Mapping[tuple[str, str], Condition] = field(default_factory=dict)


def _sub(obj: Obj, key: str) -> Obj:
    value = obj.get(key)
    return value if isinstance(value, Mapping) else {}


def _items(field: str, obj: Obj, key: str) -> list[Any]:
    value = obj.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise SourceError(field, f"must be a list, got {type(value).__name__}")
    return value


def _meta(obj: Obj) -> Obj:
    return _sub(obj, "metadata")


def _ident(kind: str, obj: Obj) -> str:
    meta = _meta(obj)
    return f"{kind} {meta.get('namespace', '?')}/{meta.get('name', '?')}"


def _labels(obj: Obj) -> Mapping[str, str]:
    labels = _meta(obj).get("labels")
    return labels if isinstance(labels, Mapping) else {}


def _created(field: str, obj: Obj, fallback: datetime) -> datetime:
    text = _meta(obj).get("creationTimestamp")
    if text is None:
        return fallback
    if not isinstance(text, str):
        raise SourceError(field, f"{text!r} is not an RFC 3339 time")
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise SourceError(field, f"{text!r} is not an RFC 3339 time") from None


def is_labelled_export(service: Obj) -> bool:
    labels = _labels(service)
    return any(labels.get(label) == "true" for label in EXPORT_LABELS)


def parse_port(field: str, raw: object, *, target: bool = False) -> Port:
    """A ServicePort or EndpointPort dict -> `Port`, errors naming `field`."""
    if not isinstance(raw, Mapping):
        raise SourceError(field, f"must be an object, got {type(raw).__name__}")
    try:
        return Port(
            port=raw.get("port"),  # type: ignore[arg-type]
            protocol=raw.get("protocol") or "TCP",
            name=raw.get("name") or "",
            app_protocol=raw.get("appProtocol") or "",
        )
    except ValidationError as err:
        raise SourceError(f"{field}.{_camel(err.field)}", err.message) from err


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.title() for p in rest)


def service_ports(service: Obj) -> tuple[Port, ...]:
    raw = _items("spec.ports", _sub(service, "spec"), "ports")
    return tuple(parse_port(f"spec.ports[{i}]", p) for i, p in enumerate(raw))


def is_headless(service: Obj) -> bool:
    return _sub(service, "spec").get("clusterIP") == "None"


def slice_endpoints(
    slice_: Obj, *, cluster: str, namespace: str, service: str, default_zone: str
) -> list[Endpoint]:
    """One EndpointSlice -> endpoints (one per address), errors naming the field."""
    if slice_.get("addressType") not in ADDRESS_TYPES:
        return []
    ports_raw = _items("ports", slice_, "ports")
    ports = tuple(parse_port(f"ports[{i}]", p) for i, p in enumerate(ports_raw))
    if not ports:
        return []  # a slice with no ports selects no traffic (EndpointPort docs)
    out: list[Endpoint] = []
    for i, ep in enumerate(_items("endpoints", slice_, "endpoints")):
        field = f"endpoints[{i}]"
        if not isinstance(ep, Mapping):
            raise SourceError(field, "must be an object")
        ready = _sub(ep, "conditions").get("ready") is True
        zone = ep.get("zone") or default_zone
        for j, addr in enumerate(_items(f"{field}.addresses", ep, "addresses")):
            try:
                out.append(Endpoint(cluster, namespace, service, addr, ports, zone, ready))
            except ValidationError as err:
                where = f"{field}.addresses[{j}]" if err.field == "address" else field
                raise SourceError(f"{where}.{err.field}", err.message) from err
    return out


def translate(
    services: Iterable[Obj],
    slices: Iterable[Obj],
    exports: Iterable[Obj],
    *,
    cluster: str,
    default_zone: str,
    now: datetime,
    namespaces: NamespaceFilter = NamespaceFilter(),
) -> Translation:
    """The local cluster's exported services, from the three object kinds."""
    problems: list[str] = []
    export_objs: dict[tuple[str, str], Obj] = {}
    for obj in exports:
        meta = _meta(obj)
        ns, name = meta.get("namespace"), meta.get("name")
        if isinstance(ns, str) and isinstance(name, str) and namespaces.admits(ns):
            export_objs[(ns, name)] = obj
    slices_by_service: dict[tuple[str, str], list[Obj]] = defaultdict(list)
    for obj in slices:
        ns = _meta(obj).get("namespace")
        owner = _labels(obj).get(SERVICE_NAME_LABEL)
        if isinstance(ns, str) and isinstance(owner, str) and namespaces.admits(ns):
            slices_by_service[(ns, owner)].append(obj)

    out: dict[ServiceKey, LocalService] = {}
    validity: dict[tuple[str, str], Condition] = {}
    seen_services: set[tuple[str, str]] = set()
    for svc in services:
        meta = _meta(svc)
        ns, name = meta.get("namespace"), meta.get("name")
        if not (isinstance(ns, str) and isinstance(name, str)) or not namespaces.admits(ns):
            continue
        seen_services.add((ns, name))
        marker = export_objs.get((ns, name))
        if marker is None and not is_labelled_export(svc):
            continue
        if _sub(svc, "spec").get("type") == "ExternalName":
            if marker is not None:
                validity[(ns, name)] = Condition(
                    VALID,
                    "False",
                    REASON_INVALID_TYPE,
                    "ExternalName services cannot be exported (MCS KEP-1645)",
                    now,
                )
            continue
        try:
            local = _local_service(
                svc, marker, slices_by_service[(ns, name)], cluster, default_zone, now
            )
        except SourceError as err:
            problems.append(f"{_ident('Service', svc)}: {err}")
            if marker is not None:
                validity[(ns, name)] = Condition(VALID, "False", "InvalidService", str(err), now)
            continue
        out[local.key] = local
        if marker is not None:
            validity[(ns, name)] = Condition(
                VALID, "True", REASON_VALID, "the service is exported", now
            )
    for key in export_objs:
        if key not in seen_services:
            validity[key] = Condition(
                VALID,
                "False",
                REASON_NO_SERVICE,
                f"no Service {key[0]}/{key[1]} to export",
                now,
            )
    return Translation(
        dict(sorted(out.items(), key=lambda kv: str(kv[0]))), tuple(problems), validity
    )


def _local_service(
    svc: Obj,
    marker: Obj | None,
    slices: list[Obj],
    cluster: str,
    default_zone: str,
    now: datetime,
) -> LocalService:
    meta = _meta(svc)
    ns, name = meta["namespace"], meta["name"]
    created = _created("metadata.creationTimestamp", marker if marker is not None else svc, now)
    try:
        export = ServiceExport(cluster, ns, name, created, service_ports(svc))
    except ValidationError as err:
        raise SourceError(err.field, err.message) from err
    by_address: dict[str, Endpoint] = {}
    for slice_ in sorted(slices, key=lambda s: str(_meta(s).get("name"))):
        try:
            eps = slice_endpoints(
                slice_, cluster=cluster, namespace=ns, service=name, default_zone=default_zone
            )
        except SourceError as err:
            raise SourceError(
                f"EndpointSlice {_meta(slice_).get('name')}: {err.field}", err.message
            ) from err
        for ep in eps:
            held = by_address.get(ep.address)
            # The same address in two slices (a slice being replaced): ready wins.
            if held is None or (ep.ready and not held.ready):
                by_address[ep.address] = ep
    endpoints = tuple(by_address[a] for a in sorted(by_address))
    return LocalService(export, endpoints, is_headless(svc))
