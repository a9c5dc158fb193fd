"""Services and their endpoints: what clusters export and the addresses behind them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar

from federation.errors import ValidationError
from federation.model import validation as v
from federation.model.base import (
    MAX_WEIGHT,
    Port,
    Record,
    _ports,
    _time,
    _tuple_of,
)


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


def endpoint_prefix(namespace: str, service: str, cluster: str | None = None) -> str:
    """Key prefix of one service's endpoints, optionally narrowed to one cluster."""
    base = f"{namespace}/{service}/"
    return base if cluster is None else f"{base}{cluster}/"
