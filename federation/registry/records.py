"""The records a registry operation writes, and the store ops that write them (pure).

Why this module exists: `Registry` (service.py) does the I/O; what a static export,
a cluster's Gateway record, a new link's conditions or a link credential's
condition look like is decided here from data, with time passed in; so are the
summaries it answers with (`ServiceSummary`, `Topology`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, TypeVar

from federation.errors import ValidationError
from federation.model import (
    Cluster,
    Condition,
    Endpoint,
    Gateway,
    Link,
    Port,
    Record,
    ServiceExport,
    ServiceKey,
)
from federation.model.base import LINK_CONDITIONS
from federation.store import Versioned
from federation.store.backend import ABSENT, Delete, Op, Put
from federation.store.typed import encode, storage_key

T = TypeVar("T")

# Why a new link's conditions are Unknown: nothing has probed or synced it yet.
INITIAL_REASONS = {
    "Ready": ("Pending", "waiting for the other conditions"),
    "GatewayReachable": ("NotProbed", "no gateway has reported a probe yet"),
    "CredentialsValid": ("Pending", "credentials not yet exchanged"),
    "Synced": ("Pending", "no agent has synced this link yet"),
}


@dataclass(frozen=True, slots=True)
class ExportState:
    """One cluster's export of one service with that cluster's endpoints for it."""

    export: Versioned[ServiceExport]
    endpoints: tuple[Versioned[Endpoint], ...]

    @property
    def leased(self) -> bool:
        """Held by an agent: the export or an endpoint lives under a lease."""
        return self.export.lease != 0 or any(ep.lease != 0 for ep in self.endpoints)


def at_field(prefix: str, make: Callable[..., T], *args: Any) -> T:
    """`make(*args)`, a ValidationError's field put under `prefix` (`endpoints[1].zone`)."""
    try:
        return make(*args)
    except ValidationError as exc:
        field = exc.field if exc.field.startswith(prefix) else f"{prefix}.{exc.field}"
        raise ValidationError(field, exc.message) from None


def endpoint_ports(
    field: str, spec: Mapping[str, Any], service_ports: tuple[Port, ...]
) -> tuple[Port, ...]:
    """An endpoint's ports: `port` (for the service's only port), `ports` matched to the
    service's by name, or neither (it listens on the service's own ports); protocol and
    app protocol are the service's. The rules of discovery_sync's static source file."""
    port, ports = spec.get("port"), spec.get("ports")
    if port is not None and ports is not None:
        raise ValidationError(f"{field}.ports", "give either port or ports, not both")
    if ports is None:
        if port is None:
            return service_ports
        if len(service_ports) > 1:
            raise ValidationError(
                f"{field}.port",
                f"the service has {len(service_ports)} ports: give ports: [{{name, port}}]",
            )
        only = service_ports[0]
        return (at_field(f"{field}.port", Port, port, only.protocol, only.name, only.app_protocol),)
    by_name = {p.name: p for p in service_ports}
    out: list[Port] = []
    seen: set[tuple[int, str]] = set()
    for k, raw in enumerate(ports):
        pfield = f"{field}.ports[{k}]"
        name = raw.get("name") or ""
        svc = by_name.get(name)
        if svc is None and not name and len(service_ports) == 1:
            svc = service_ports[0]  # an unnamed port of a one-port service is that port
        if svc is None:
            raise ValidationError(f"{pfield}.name", f"{name!r} names none of the service's ports")
        p = at_field(pfield, Port, raw.get("port"), svc.protocol, svc.name, svc.app_protocol)
        if (p.port, p.protocol) in seen:
            raise ValidationError(f"{pfield}.port", f"port {p.port}/{p.protocol} listed twice")
        seen.add((p.port, p.protocol))
        out.append(p)
    if not out:
        raise ValidationError(f"{field}.ports", "an endpoint needs at least one port")
    return tuple(out)


def static_export(
    cluster: Cluster,
    namespace: str,
    name: str,
    spec: Mapping[str, Any],
    created: datetime,
) -> tuple[ServiceExport, tuple[Endpoint, ...]]:
    """The export and endpoints a static export request describes, every error naming its
    field (`ports[0].port`, `endpoints[2].address`). `spec` holds `ports`, `scope` and
    `endpoints` (each `address`, `port` or `ports`, `zone` (default: the cluster's),
    `ready`, `weight`), as the REST body has them."""
    ports = tuple(
        at_field(f"ports[{i}]", Port.from_dict, raw)
        for i, raw in enumerate(spec.get("ports") or ())
    )
    if not ports:
        raise ValidationError("ports", "an export needs at least one port")
    scope = tuple(spec.get("scope") or ())
    export = ServiceExport(cluster.name, namespace, name, created, ports, scope)
    endpoints: dict[str, Endpoint] = {}
    for j, raw in enumerate(spec.get("endpoints") or ()):
        field = f"endpoints[{j}]"
        ep = at_field(
            field,
            Endpoint,
            cluster.name,
            namespace,
            name,
            raw.get("address"),
            endpoint_ports(field, raw, export.ports),
            raw.get("zone") or cluster.zone,
            raw.get("ready", True),
            raw.get("weight", 1),
        )
        if ep.address in endpoints:
            raise ValidationError(f"{field}.address", f"{ep.address} is listed twice")
        endpoints[ep.address] = ep
    return export, tuple(endpoints[a] for a in sorted(endpoints))


def put_op(record: Record, expect: int | None) -> Put:
    return Put(storage_key(record.KIND, record.key), encode(record), expect)


def delete_op(kind: str, key: str, expect: int | None = None) -> Delete:
    return Delete(storage_key(kind, key), expect)


def endpoint_ops(held: Sequence[Versioned[Endpoint]], wanted: Sequence[Endpoint]) -> list[Op]:
    """Make `held` (one service's endpoints in one cluster) into `wanted`, each write
    conditioned on the revision read: `Store.replace_endpoints`' rule, as ops to commit
    with the export and the audit event. Unleased (lease 0) throughout."""
    want = {ep.key: ep for ep in wanted}
    ops: list[Op] = [
        delete_op(Endpoint.KIND, v.record.key, v.revision) for v in held if v.record.key not in want
    ]
    have = {v.record.key: v for v in held}
    for k, ep in want.items():
        old = have.get(k)
        if old is not None and old.record == ep and old.lease == 0:
            continue
        ops.append(put_op(ep, old.revision if old is not None else ABSENT))
    return ops


def gateway_for(cluster: Cluster, held: Gateway | None) -> Gateway | None:
    """The Gateway record `cluster` implies: its gateway addresses, locality and trust
    domain; None when it has no gateway address. What the registry does not own --
    `healthy` (peers' probe reports) and `modes` -- is kept from `held`."""
    if not cluster.gateway_addresses:
        return None
    if held is None:
        return Gateway(
            cluster.name,
            cluster.gateway_addresses,
            region=cluster.region,
            zone=cluster.zone,
            trust_domain=cluster.trust_domain,
        )
    return replace(
        held,
        addresses=cluster.gateway_addresses,
        region=cluster.region,
        zone=cluster.zone,
        trust_domain=cluster.trust_domain,
    )


def gateway_ops(cluster: Cluster, held: Versioned[Gateway] | None) -> list[Op]:
    """Store ops that make the cluster's Gateway record match it (none if it already does).

    Compare-and-set on the held record, so a concurrent health report is not lost:
    the transaction fails with Conflict instead and the caller retries.
    """
    wanted = gateway_for(cluster, held.record if held is not None else None)
    if wanted is None:
        return [] if held is None else [delete_op(Gateway.KIND, cluster.name, held.revision)]
    if held is not None and held.record == wanted:
        return []
    return [put_op(wanted, held.revision if held is not None else ABSENT)]


def initial_conditions(now: datetime) -> tuple[Condition, ...]:
    return tuple(
        Condition(t, "Unknown", INITIAL_REASONS[t][0], INITIAL_REASONS[t][1], now)
        for t in LINK_CONDITIONS
    )


def credential_condition(expiry: datetime | None, now: datetime) -> Condition:
    """CredentialsValid for a link holding a credential that expires at `expiry`."""
    if expiry is None:
        return Condition("CredentialsValid", "True", "NoCredential", "the link holds none", now)
    if expiry <= now:
        return Condition(
            "CredentialsValid", "False", "Expired", f"expired {expiry.isoformat()}", now
        )
    return Condition("CredentialsValid", "True", "Valid", f"expires {expiry.isoformat()}", now)


@dataclass(frozen=True, slots=True)
class ServiceSummary:
    """A service across the federation: who exports it, merged ports, conflicts."""

    service: ServiceKey
    exports: tuple[ServiceExport, ...]
    ports: tuple[Port, ...]
    conflicts: tuple[str, ...]
    endpoints: tuple[Endpoint, ...] = ()

    @property
    def clusters(self) -> tuple[str, ...]:
        return tuple(sorted(e.cluster for e in self.exports))


@dataclass(frozen=True, slots=True)
class Topology:
    clusters: tuple[Cluster, ...]
    links: tuple[Link, ...]
    gateways: Mapping[str, Gateway]
