"""Model records <-> protobuf messages: the one place that knows both shapes.

Pure and shared: the server turns incoming messages into validated records
(a bad field raises `ValidationError` naming it, with its position in the
message, e.g. `services[2].endpoints[0].address`) and records into outgoing
messages; `federation.client` does the reverse with the same functions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from functools import partial
from typing import TypeVar

from google.protobuf.timestamp_pb2 import Timestamp

from federation.controlplane import meshfed_pb2 as pb
from federation.errors import ValidationError
from federation.model import (
    Condition,
    Endpoint,
    Gateway,
    Link,
    Port,
    ServiceExport,
    ServiceKey,
    TrustDomain,
)
from federation.model.imports import ServiceImport

T = TypeVar("T")

_HEALTH_TO_PB = {None: pb.HEALTH_UNKNOWN, True: pb.HEALTH_UP, False: pb.HEALTH_DOWN}
_HEALTH_FROM_PB = {v: k for k, v in _HEALTH_TO_PB.items()}


def at(prefix: str, build: Callable[[], T]) -> T:
    """Run `build`; a ValidationError's field gets `prefix` in front of it."""
    try:
        return build()
    except ValidationError as exc:
        raise ValidationError(f"{prefix}.{exc.field}", exc.message) from None
    except TypeError as exc:  # a record constructor refused a value's type
        raise ValidationError(prefix, str(exc)) from None


def timestamp(value: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(value.astimezone(UTC))
    return ts


def from_timestamp(ts: Timestamp) -> datetime:
    value: datetime = ts.ToDatetime(tzinfo=UTC)
    return value


# -- ports and services ------------------------------------------------------------


def port_to_pb(port: Port) -> pb.Port:
    return pb.Port(
        port=port.port, protocol=port.protocol, name=port.name, app_protocol=port.app_protocol
    )


def port_from_pb(msg: pb.Port) -> Port:
    return Port(
        port=msg.port, protocol=msg.protocol or "TCP", name=msg.name, app_protocol=msg.app_protocol
    )


def _ports(field: str, msgs: Iterable[pb.Port]) -> tuple[Port, ...]:
    return tuple(at(f"{field}[{i}]", partial(port_from_pb, m)) for i, m in enumerate(msgs))


def service_ref(key: ServiceKey) -> pb.ServiceRef:
    return pb.ServiceRef(namespace=key.namespace, name=key.name)


def service_key(msg: pb.ServiceRef) -> ServiceKey:
    return ServiceKey(msg.namespace, msg.name)


def export_to_pb(export: ServiceExport) -> pb.ServiceExport:
    return pb.ServiceExport(
        cluster=export.cluster,
        namespace=export.namespace,
        name=export.name,
        created=timestamp(export.created),
        ports=[port_to_pb(p) for p in export.ports],
        scope=list(export.scope),
    )


def export_from_pb(msg: pb.ServiceExport) -> ServiceExport:
    if not msg.HasField("created"):
        raise ValidationError("created", "is required (the export's creation time)")
    return ServiceExport(
        cluster=msg.cluster,
        namespace=msg.namespace,
        name=msg.name,
        created=from_timestamp(msg.created),
        ports=_ports("ports", msg.ports),
        scope=tuple(msg.scope),
    )


def endpoint_to_pb(ep: Endpoint) -> pb.Endpoint:
    return pb.Endpoint(
        cluster=ep.cluster,
        namespace=ep.namespace,
        service=ep.service,
        address=ep.address,
        ports=[port_to_pb(p) for p in ep.ports],
        zone=ep.zone,
        ready=ep.ready,
        weight=ep.weight,
    )


def endpoint_from_pb(msg: pb.Endpoint) -> Endpoint:
    return Endpoint(
        cluster=msg.cluster,
        namespace=msg.namespace,
        service=msg.service,
        address=msg.address,
        ports=_ports("ports", msg.ports),
        zone=msg.zone,
        ready=msg.ready,
        weight=msg.weight,
    )


def import_to_pb(imp: ServiceImport) -> pb.ServiceImport:
    return pb.ServiceImport(
        service=service_ref(imp.service),
        ports=[port_to_pb(p) for p in imp.ports],
        clusters=list(imp.clusters),
        conflicts=list(imp.conflicts),
        endpoints=[endpoint_to_pb(e) for e in imp.endpoints],
    )


def import_from_pb(consumer: str, msg: pb.ServiceImport) -> ServiceImport:
    return ServiceImport(
        consumer=consumer,
        service=service_key(msg.service),
        ports=_ports("ports", msg.ports),
        clusters=tuple(msg.clusters),
        conflicts=tuple(msg.conflicts),
        endpoints=tuple(
            at(f"endpoints[{i}]", partial(endpoint_from_pb, m)) for i, m in enumerate(msg.endpoints)
        ),
    )


# -- topology ---------------------------------------------------------------------


def condition_to_pb(c: Condition) -> pb.Condition:
    return pb.Condition(
        type=c.type,
        status=c.status,
        reason=c.reason,
        message=c.message,
        last_transition_time=timestamp(c.last_transition_time),
    )


def condition_from_pb(msg: pb.Condition) -> Condition:
    return Condition(
        type=msg.type,
        status=msg.status,
        reason=msg.reason,
        message=msg.message,
        last_transition_time=from_timestamp(msg.last_transition_time),
    )


def link_to_pb(link: Link) -> pb.Link:
    msg = pb.Link(
        a=link.a,
        b=link.b,
        bidirectional=link.bidirectional,
        mode=link.mode,
        namespaces=list(link.namespaces),
        conditions=[condition_to_pb(c) for c in link.conditions],
    )
    if link.credential_expiry is not None:
        msg.credential_expiry.CopyFrom(timestamp(link.credential_expiry))
    return msg


def link_from_pb(msg: pb.Link) -> Link:
    return Link(
        a=msg.a,
        b=msg.b,
        bidirectional=msg.bidirectional,
        mode=msg.mode,
        namespaces=tuple(msg.namespaces),
        conditions=tuple(
            at(f"conditions[{i}]", partial(condition_from_pb, m))
            for i, m in enumerate(msg.conditions)
        ),
        credential_expiry=(
            from_timestamp(msg.credential_expiry) if msg.HasField("credential_expiry") else None
        ),
    )


def gateway_to_pb(gw: Gateway) -> pb.Gateway:
    return pb.Gateway(
        cluster=gw.cluster,
        addresses=list(gw.addresses),
        modes=list(gw.modes),
        healthy=_HEALTH_TO_PB[gw.healthy],
        region=gw.region,
        zone=gw.zone,
        trust_domain=gw.trust_domain,
    )


def gateway_from_pb(msg: pb.Gateway) -> Gateway:
    return Gateway(
        cluster=msg.cluster,
        addresses=tuple(msg.addresses),
        modes=tuple(msg.modes),
        healthy=_HEALTH_FROM_PB.get(msg.healthy),
        region=msg.region,
        zone=msg.zone,
        trust_domain=msg.trust_domain,
    )


def bundle_to_pb(td: TrustDomain) -> pb.TrustBundle:
    return pb.TrustBundle(
        trust_domain=td.name,
        roots_pem=list(td.roots_pem),
        sequence=td.sequence,
        refresh_hint_seconds=td.refresh_hint_seconds,
        signing_root_sha256=td.signing_root_sha256,
    )


def bundle_from_pb(msg: pb.TrustBundle) -> TrustDomain:
    return TrustDomain(
        name=msg.trust_domain,
        roots_pem=tuple(msg.roots_pem),
        sequence=msg.sequence,
        refresh_hint_seconds=msg.refresh_hint_seconds,
        signing_root_sha256=msg.signing_root_sha256,
    )
