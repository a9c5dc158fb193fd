"""The federation's shape: clusters, the links between them, gateways, trust domains."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import ClassVar

from federation.errors import ValidationError
from federation.model import validation as v
from federation.model.base import (
    GATEWAY_MODES,
    LINK_MODES,
    SOURCE_KINDS,
    Condition,
    Record,
    _time,
    _tuple_of,
)

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")  # trust_bundle.certificate_fingerprint's format


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


@dataclass(frozen=True, slots=True)
class Gateway(Record):
    """A cluster's east-west gateway as the registry knows it.

    The registry writes it from the cluster (`gateway_addresses`, locality, trust
    domain) so peers can rank it by locality and verify its SPIFFE ID
    (`spiffe://<trust_domain>/meshfed/gateway/<cluster>`); `healthy` comes from
    the peers' probe reports. `region`, `zone` and `trust_domain` are "" in records
    written before they existed (unknown).
    """

    KIND: ClassVar[str] = "gateways"

    cluster: str
    addresses: tuple[str, ...]
    modes: tuple[str, ...] = GATEWAY_MODES
    healthy: bool | None = None  # None: not probed yet ("unknown")
    region: str = ""
    zone: str = ""
    trust_domain: str = ""

    def __post_init__(self) -> None:
        v.dns1123_label("cluster", self.cluster)
        for fieldname in ("region", "zone"):
            value = getattr(self, fieldname)
            if not isinstance(value, str):
                raise ValidationError(fieldname, "must be a string")
            if value:
                v.label_value(fieldname, value)
        if not isinstance(self.trust_domain, str):
            raise ValidationError("trust_domain", "must be a string")
        if self.trust_domain:
            v.trust_domain("trust_domain", self.trust_domain)
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


@dataclass(frozen=True, slots=True)
class TrustDomain(Record):
    """A SPIFFE trust domain and the root certificates (PEM) that verify it.

    `signing_root_sha256` is the SHA-256 fingerprint (hex) of the root that signs
    new intermediates now: it moves at a rotation's activate, where the roots
    themselves (and so `sequence`) do not change, and tells agents and gateways to
    renew their SVIDs under the new root. "" in records written before it existed
    and in bundles of other federations: unknown, nobody renews early.
    """

    KIND: ClassVar[str] = "trustdomains"

    name: str
    roots_pem: tuple[str, ...]
    sequence: int = 1
    refresh_hint_seconds: int = 300  # SPIFFE bundle spec leaves it to the issuer; 5 min
    signing_root_sha256: str = ""

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
        fp = self.signing_root_sha256
        if not isinstance(fp, str) or (fp and not _SHA256_HEX.fullmatch(fp)):
            raise ValidationError(
                "signing_root_sha256", f"{fp!r} is not a SHA-256 fingerprint (64 hex digits)"
            )

    @property
    def key(self) -> str:
        return self.name


@dataclass(frozen=True, slots=True)
class BundleReport(Record):
    """The roots one gateway replica of a cluster reported it verifies peers with
    (ReportHealth), keyed `<cluster>/<instance>` (the replica's host or pod name; ""
    for a gateway that does not say).

    A root rotation's propagation is complete for a cluster once every live
    replica's report holds every root the federation publishes
    (federation.registry.rotation_view.acknowledged). Rewritten when the set changes
    or the record is older than BUNDLE_REPORT_REFRESH, so `reported` says which
    replicas are still alive.
    """

    KIND: ClassVar[str] = "bundlereports"

    cluster: str
    roots_sha256: tuple[str, ...]
    reported: datetime
    instance: str = ""

    def __post_init__(self) -> None:
        v.dns1123_label("cluster", self.cluster)
        if self.instance != "":
            v.dns_subdomain("instance", self.instance)
        roots = _tuple_of("roots_sha256", self.roots_sha256)
        for i, fp in enumerate(roots):
            if not isinstance(fp, str) or not _SHA256_HEX.fullmatch(fp):
                raise ValidationError(f"roots_sha256[{i}]", f"{fp!r} is not a SHA-256 fingerprint")
        object.__setattr__(self, "roots_sha256", tuple(sorted(set(roots))))
        object.__setattr__(self, "reported", _time("reported", self.reported))

    @property
    def key(self) -> str:
        return f"{self.cluster}/{self.instance}"
