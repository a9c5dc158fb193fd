"""The registry's nouns as frozen, validated dataclasses.

Every record validates itself in `__post_init__`, so an invalid record cannot exist
in memory, and has a `key` that is its identity in the store. Records know how to
turn into and out of plain JSON-able dicts (`to_dict` / `from_dict`); `from_dict`
rejects unknown or missing fields with a message naming the field. This module does
no I/O and reads no clock: times are passed in.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar, Self

from federation.errors import ValidationError
from federation.model import validation as v

SOURCE_KINDS = ("kubernetes", "static")
LINK_MODES = ("terminating", "passthrough")
GATEWAY_MODES = ("passthrough", "terminating")
PROTOCOLS = ("TCP", "UDP", "SCTP")  # Kubernetes core/v1 Protocol
CONDITION_STATUSES = ("True", "False", "Unknown")  # metav1.ConditionStatus
# Link condition types (DESIGN.md "Link").
LINK_CONDITIONS = ("Ready", "GatewayReachable", "CredentialsValid", "Synced")
SCOPE_CLUSTERSET = "clusterset"  # MCS: exported to every linked cluster
MAX_WEIGHT = 1_000_000  # generous bound; Istio's LB weights are uint32 but 1e6 keeps sums small


def _time(fieldname: str, value: object) -> datetime:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise ValidationError(fieldname, f"{value!r} is not an RFC 3339 time") from None
    if not isinstance(value, datetime):
        raise ValidationError(fieldname, f"must be a time, got {type(value).__name__}")
    if value.tzinfo is None:
        raise ValidationError(fieldname, "must carry a timezone (RFC 3339)")
    return value.astimezone(UTC)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _check_fields(cls: type, data: object) -> Mapping[str, Any]:
    """Reject non-mappings, unknown fields and missing required fields by name."""
    name = cls.__name__
    if not isinstance(data, Mapping):
        raise ValidationError(name, f"must be an object, got {type(data).__name__}")
    known = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for key in data:
        if key not in known:
            raise ValidationError(f"{name}.{key}", "unknown field")
    for fname, f in known.items():
        has_default = (
            f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        )
        if fname not in data and not has_default:
            raise ValidationError(f"{name}.{fname}", "is required")
    return data


def _tuple_of(fieldname: str, value: object) -> tuple[Any, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise ValidationError(fieldname, f"must be a list, got {type(value).__name__}")
    return tuple(value)


@dataclass(frozen=True, slots=True)
class ServiceKey:
    """A service's clusterset-wide identity: MCS "namespace sameness" makes ns/name global."""

    namespace: str
    name: str

    def __post_init__(self) -> None:
        v.dns1123_label("namespace", self.namespace)
        v.dns1035_label("name", self.name)

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"

    @classmethod
    def parse(cls, text: str) -> ServiceKey:
        namespace, sep, name = text.partition("/")
        if not sep:
            raise ValidationError("service", f"{text!r} is not namespace/name")
        return cls(namespace, name)


@dataclass(frozen=True, slots=True)
class Port:
    """A service port, shaped like Kubernetes' ServicePort / MCS ServicePort."""

    port: int
    protocol: str = "TCP"
    name: str = ""
    app_protocol: str = ""

    def __post_init__(self) -> None:
        v.port("port", self.port)
        v.choice("protocol", self.protocol, PROTOCOLS)
        if self.name:
            v.dns1123_label("name", self.name)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"port": self.port, "protocol": self.protocol}
        if self.name:
            out["name"] = self.name
        if self.app_protocol:
            out["app_protocol"] = self.app_protocol
        return out

    @classmethod
    def from_dict(cls, data: object) -> Port:
        d = _check_fields(cls, data)
        return cls(**d)


def _ports(fieldname: str, value: object) -> tuple[Port, ...]:
    items = _tuple_of(fieldname, value)
    ports = tuple(p if isinstance(p, Port) else Port.from_dict(p) for p in items)
    seen: set[tuple[int, str]] = set()
    for p in ports:
        if (p.port, p.protocol) in seen:
            raise ValidationError(fieldname, f"port {p.port}/{p.protocol} listed twice")
        seen.add((p.port, p.protocol))
    return ports


@dataclass(frozen=True, slots=True)
class Condition:
    """A Kubernetes-style status condition (metav1.Condition)."""

    type: str
    status: str
    reason: str
    message: str
    last_transition_time: datetime

    def __post_init__(self) -> None:
        if not self.type:
            raise ValidationError("type", "must not be empty")
        v.choice("status", self.status, CONDITION_STATUSES)
        if not self.reason or not self.reason[0].isalpha():
            raise ValidationError("reason", f"{self.reason!r} must be a CamelCase word")
        object.__setattr__(
            self, "last_transition_time", _time("last_transition_time", self.last_transition_time)
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "status": self.status,
            "reason": self.reason,
            "message": self.message,
            "last_transition_time": _iso(self.last_transition_time),
        }

    @classmethod
    def from_dict(cls, data: object) -> Condition:
        return cls(**_check_fields(cls, data))


def _stored_time(value: Any) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _build(cls: type[Any], data: Mapping[str, Any]) -> Any:
    """Rebuild a record the store already validated on write, skipping validation.

    Decoding 100,000 endpoints for a watcher's snapshot is the registry's hottest
    path; validation on top of JSON parsing tripled its cost (see
    docs/performance.md). Fields missing from older records take their defaults.
    """
    builder = _BUILDERS.get(cls)
    if builder is None:
        builder = _BUILDERS[cls] = _compile_builder(cls)
    return builder(data)


_BUILDERS: dict[type[Any], Any] = {}


def _compile_builder(cls: type[Any]) -> Any:
    """Generate `build(data)` for `cls`, the way `dataclasses` generates `__init__`.

    One straight-line function per class: a slot assignment per field, converters
    only where the JSON type differs from the field's type.
    """
    env: dict[str, Any] = {"new": object.__new__, "cls": cls, "MISSING": dataclasses.MISSING}
    lines = ["def build(d):", "    o = new(cls)"]
    for i, f in enumerate(f for f in dataclasses.fields(cls) if f.init):
        setter = f"s{i}"
        env[setter] = getattr(cls, f.name).__set__  # the slot's descriptor
        if f.default is not dataclasses.MISSING:
            env[f"d{i}"] = f.default
            fetch = f"d.get({f.name!r}, d{i})"
        elif f.default_factory is not dataclasses.MISSING:
            env[f"f{i}"] = f.default_factory
            fetch = f"(d[{f.name!r}] if {f.name!r} in d else f{i}())"
        else:
            fetch = f"d[{f.name!r}]"
        convert = _STORED.get(f.name)
        if convert is not None:
            env[f"c{i}"] = convert
            fetch = f"c{i}({fetch})"
        lines.append(f"    {setter}(o, {fetch})")
    lines.append("    return o")
    exec("\n".join(lines), env)  # generated from dataclass fields only, no user input
    return env["build"]


_STORED: dict[str, Any] = {
    "ports": lambda v: tuple(_build(Port, p) for p in v),
    "conditions": lambda v: tuple(
        _build(Condition, {**c, "last_transition_time": _stored_time(c["last_transition_time"])})
        for c in v
    ),
    "created": _stored_time,
    "credential_expiry": _stored_time,
    "gateway_addresses": tuple,
    "addresses": tuple,
    "namespaces": tuple,
    "scope": tuple,
    "modes": tuple,
    "roots_pem": tuple,
}


class Record:
    """Mixin: what the store needs of every record kind."""

    KIND: ClassVar[str]

    @classmethod
    def from_stored(cls, data: Mapping[str, Any]) -> Self:
        """Rebuild from the store's own JSON without re-validating (see `_build`)."""
        built: Self = _build(cls, data)
        return built

    @property
    def key(self) -> str:
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def from_dict(cls, data: object) -> Self:
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class Cluster(Record):
    """A member cluster: where it is, how it is reached, what it trusts."""

    KIND: ClassVar[str] = "clusters"

    name: str
    region: str
    zone: str
    trust_domain: str
    network: str = "default"
    gateway_addresses: tuple[str, ...] = ()
    source: str = "static"
    labels: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        v.dns1123_label("name", self.name)
        v.label_value("region", self.region)
        v.label_value("zone", self.zone)
        v.trust_domain("trust_domain", self.trust_domain)
        v.label_value("network", self.network)
        addrs = _tuple_of("gateway_addresses", self.gateway_addresses)
        object.__setattr__(
            self,
            "gateway_addresses",
            tuple(v.host_port(f"gateway_addresses[{i}]", a) for i, a in enumerate(addrs)),
        )
        v.choice("source", self.source, SOURCE_KINDS)
        object.__setattr__(self, "labels", v.labels("labels", self.labels))

    @property
    def key(self) -> str:
        return self.name

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "region": self.region,
            "zone": self.zone,
            "trust_domain": self.trust_domain,
            "network": self.network,
            "gateway_addresses": list(self.gateway_addresses),
            "source": self.source,
            "labels": dict(self.labels),
        }

    @classmethod
    def from_dict(cls, data: object) -> Self:
        return cls(**_check_fields(cls, data))


@dataclass(frozen=True, slots=True)
class Link(Record):
    """Two clusters exchanging exports.

    Both directions unless `bidirectional` is false; then `a` imports what `b`
    exports and not the other way round.
    """

    KIND: ClassVar[str] = "links"

    a: str
    b: str
    bidirectional: bool = True
    mode: str = "terminating"
    namespaces: tuple[str, ...] = ()  # empty: every namespace
    conditions: tuple[Condition, ...] = ()
    credential_expiry: datetime | None = None

    def __post_init__(self) -> None:
        v.dns1123_label("a", self.a)
        v.dns1123_label("b", self.b)
        if self.a == self.b:
            raise ValidationError("b", f"a cluster cannot link to itself ({self.a!r})")
        if not isinstance(self.bidirectional, bool):
            raise ValidationError("bidirectional", "must be true or false")
        v.choice("mode", self.mode, LINK_MODES)
        nss = _tuple_of("namespaces", self.namespaces)
        object.__setattr__(
            self,
            "namespaces",
            tuple(sorted({v.dns1123_label(f"namespaces[{i}]", n) for i, n in enumerate(nss)})),
        )
        conds = tuple(
            c if isinstance(c, Condition) else Condition.from_dict(c)
            for c in _tuple_of("conditions", self.conditions)
        )
        types = [c.type for c in conds]
        if len(types) != len(set(types)):
            raise ValidationError("conditions", "a condition type appears twice")
        object.__setattr__(self, "conditions", conds)
        if self.credential_expiry is not None:
            object.__setattr__(
                self, "credential_expiry", _time("credential_expiry", self.credential_expiry)
            )

    @property
    def key(self) -> str:
        return f"{self.a}/{self.b}"

    def imports(self, consumer: str, producer: str) -> bool:
        """Does `consumer` see `producer`'s exports through this link?"""
        if (consumer, producer) == (self.a, self.b):
            return True
        return self.bidirectional and (consumer, producer) == (self.b, self.a)

    def condition(self, type_: str) -> Condition | None:
        return next((c for c in self.conditions if c.type == type_), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "a": self.a,
            "b": self.b,
            "bidirectional": self.bidirectional,
            "mode": self.mode,
            "namespaces": list(self.namespaces),
            "conditions": [c.to_dict() for c in self.conditions],
            "credential_expiry": _iso(self.credential_expiry),
        }

    @classmethod
    def from_dict(cls, data: object) -> Self:
        return cls(**_check_fields(cls, data))


@dataclass(frozen=True, slots=True)
class ServiceExport(Record):
    """A service one cluster offers to the clusterset (MCS ServiceExport).

    `scope` lists the clusters allowed to import it; empty means the whole
    clusterset. `created` decides conflicts: the oldest export wins (MCS KEP-1645).
    """

    KIND: ClassVar[str] = "exports"

    cluster: str
    namespace: str
    name: str
    created: datetime
    ports: tuple[Port, ...] = ()
    scope: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        v.dns1123_label("cluster", self.cluster)
        ServiceKey(self.namespace, self.name)
        object.__setattr__(self, "created", _time("created", self.created))
        object.__setattr__(self, "ports", _ports("ports", self.ports))
        scope = _tuple_of("scope", self.scope)
        object.__setattr__(
            self,
            "scope",
            tuple(sorted({v.dns1123_label(f"scope[{i}]", c) for i, c in enumerate(scope)})),
        )

    @property
    def service(self) -> ServiceKey:
        return ServiceKey(self.namespace, self.name)

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}/{self.cluster}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "cluster": self.cluster,
            "namespace": self.namespace,
            "name": self.name,
            "created": _iso(self.created),
            "ports": [p.to_dict() for p in self.ports],
            "scope": list(self.scope),
        }

    @classmethod
    def from_dict(cls, data: object) -> Self:
        return cls(**_check_fields(cls, data))


@dataclass(frozen=True, slots=True)
class Endpoint(Record):
    """One address of an exported service in one cluster (like an EndpointSlice entry)."""

    KIND: ClassVar[str] = "endpoints"

    cluster: str
    namespace: str
    service: str
    address: str
    ports: tuple[Port, ...]
    zone: str
    ready: bool = True
    weight: int = 1

    def __post_init__(self) -> None:
        v.dns1123_label("cluster", self.cluster)
        ServiceKey(self.namespace, self.service)
        object.__setattr__(self, "address", v.address("address", self.address))
        object.__setattr__(self, "ports", _ports("ports", self.ports))
        if not self.ports:
            raise ValidationError("ports", "an endpoint needs at least one port")
        v.label_value("zone", self.zone)
        if not isinstance(self.ready, bool):
            raise ValidationError("ready", "must be true or false")
        if isinstance(self.weight, bool) or not isinstance(self.weight, int):
            raise ValidationError("weight", f"must be an integer, got {self.weight!r}")
        if not 0 <= self.weight <= MAX_WEIGHT:
            raise ValidationError("weight", f"{self.weight} is outside 0-{MAX_WEIGHT}")

    @property
    def service_key(self) -> ServiceKey:
        return ServiceKey(self.namespace, self.service)

    @property
    def key(self) -> str:
        return endpoint_prefix(self.namespace, self.service, self.cluster) + self.address

    def to_dict(self) -> dict[str, Any]:
        return {
            "cluster": self.cluster,
            "namespace": self.namespace,
            "service": self.service,
            "address": self.address,
            "ports": [p.to_dict() for p in self.ports],
            "zone": self.zone,
            "ready": self.ready,
            "weight": self.weight,
        }

    @classmethod
    def from_dict(cls, data: object) -> Self:
        return cls(**_check_fields(cls, data))


def endpoint_prefix(namespace: str, service: str, cluster: str | None = None) -> str:
    """Key prefix of one service's endpoints, optionally narrowed to one cluster."""
    base = f"{namespace}/{service}/"
    return base if cluster is None else f"{base}{cluster}/"


@dataclass(frozen=True, slots=True)
class Gateway(Record):
    """A cluster's east-west gateway as the registry knows it."""

    KIND: ClassVar[str] = "gateways"

    cluster: str
    addresses: tuple[str, ...]
    modes: tuple[str, ...] = GATEWAY_MODES
    healthy: bool | None = None  # None: not probed yet ("unknown")

    def __post_init__(self) -> None:
        v.dns1123_label("cluster", self.cluster)
        addrs = _tuple_of("addresses", self.addresses)
        if not addrs:
            raise ValidationError("addresses", "a gateway needs at least one address")
        object.__setattr__(
            self,
            "addresses",
            tuple(v.host_port(f"addresses[{i}]", a) for i, a in enumerate(addrs)),
        )
        modes = _tuple_of("modes", self.modes)
        if not modes:
            raise ValidationError("modes", "must name at least one mode")
        object.__setattr__(
            self,
            "modes",
            tuple(v.choice(f"modes[{i}]", m, GATEWAY_MODES) for i, m in enumerate(modes)),
        )
        if self.healthy is not None and not isinstance(self.healthy, bool):
            raise ValidationError("healthy", "must be true, false or null")

    @property
    def key(self) -> str:
        return self.cluster

    def to_dict(self) -> dict[str, Any]:
        return {
            "cluster": self.cluster,
            "addresses": list(self.addresses),
            "modes": list(self.modes),
            "healthy": self.healthy,
        }

    @classmethod
    def from_dict(cls, data: object) -> Self:
        return cls(**_check_fields(cls, data))


@dataclass(frozen=True, slots=True)
class TrustDomain(Record):
    """A SPIFFE trust domain and the root certificates (PEM) that verify it."""

    KIND: ClassVar[str] = "trustdomains"

    name: str
    roots_pem: tuple[str, ...]
    sequence: int = 1
    refresh_hint_seconds: int = 300  # SPIFFE bundle spec leaves it to the issuer; 5 min

    def __post_init__(self) -> None:
        v.trust_domain("name", self.name)
        roots = _tuple_of("roots_pem", self.roots_pem)
        if not roots:
            raise ValidationError("roots_pem", "a trust domain needs at least one root")
        for i, pem in enumerate(roots):
            if not isinstance(pem, str) or "-----BEGIN CERTIFICATE-----" not in pem:
                raise ValidationError(f"roots_pem[{i}]", "is not a PEM certificate")
        object.__setattr__(self, "roots_pem", roots)
        for fname in ("sequence", "refresh_hint_seconds"):
            val = getattr(self, fname)
            if isinstance(val, bool) or not isinstance(val, int) or val < 0:
                raise ValidationError(fname, f"must be a non-negative integer, got {val!r}")

    @property
    def key(self) -> str:
        return self.name

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "roots_pem": list(self.roots_pem),
            "sequence": self.sequence,
            "refresh_hint_seconds": self.refresh_hint_seconds,
        }

    @classmethod
    def from_dict(cls, data: object) -> Self:
        return cls(**_check_fields(cls, data))


RECORD_KINDS: tuple[type[Record], ...] = (
    Cluster,
    Link,
    ServiceExport,
    Endpoint,
    Gateway,
    TrustDomain,
)
KIND_BY_NAME: dict[str, type[Record]] = {k.KIND: k for k in RECORD_KINDS}
