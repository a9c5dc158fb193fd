"""Request and response bodies of the REST API (pydantic; only here, never in the model).

Why this module exists: the OpenAPI document at /openapi.json is generated from
these classes, so they are the API's contract. Inputs forbid unknown fields and
check JSON types; the domain model (`federation.model`) then checks meaning and
names the bad field. Outputs never include CA material or token digests.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

T = TypeVar("T")

# Store revisions are etcd's int64 (and SQLite's INTEGER): larger ones cannot exist.
MAX_REVISION = 2**63 - 1
# Issue 4: join tokens default to 1 h; a day is the most we hand out (service.MAX_JOIN_TTL).
MAX_JOIN_TTL_SECONDS = 24 * 3600
# Reusable join tokens live up to a year (service.MAX_REUSABLE_JOIN_TTL says why);
# the service checks the single-use day, naming `ttl_seconds` as well.
MAX_REUSABLE_JOIN_TTL_SECONDS = 365 * 24 * 3600
# API tokens may live long (CI systems), but not past what datetime arithmetic
# can express comfortably: ten years.
MAX_TOKEN_TTL_SECONDS = 10 * 365 * 24 * 3600


class Input(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class Page(BaseModel, Generic[T]):
    """One page of a list; pass `continue` back as the `continue` query parameter."""

    model_config = ConfigDict(populate_by_name=True)

    items: list[T]
    continue_: str | None = Field(default=None, alias="continue")


# -- clusters -----------------------------------------------------------------------


class ClusterIn(Input):
    name: str = Field(description="RFC 1123 label, unique in the federation")
    region: str
    zone: str
    trust_domain: str = Field(description="SPIFFE trust domain of the cluster's mesh")
    network: str = "default"
    gateway_addresses: list[str] = Field(default_factory=list, description="host:port")
    source: Literal["kubernetes", "static"] = "static"
    labels: dict[str, str] = Field(default_factory=dict)


class ClusterPatch(Input):
    """Mutable fields only; `revision` (or an `If-Match` header) guards against lost updates."""

    region: str | None = None
    zone: str | None = None
    network: str | None = None
    gateway_addresses: list[str] | None = None
    source: Literal["kubernetes", "static"] | None = None
    labels: dict[str, str] | None = None
    revision: int | None = Field(default=None, ge=1, le=MAX_REVISION)


class ClusterOut(BaseModel):
    name: str
    region: str
    zone: str
    trust_domain: str
    network: str
    gateway_addresses: list[str]
    source: str
    labels: dict[str, str]
    revision: int


class JoinTokenIn(Input):
    ttl_seconds: int | None = Field(
        default=None,
        ge=1,
        le=MAX_REUSABLE_JOIN_TTL_SECONDS,
        description="default 3600; at most 86400 (a day) for a single-use token, "
        "31536000 (365 days) for a reusable one",
    )
    reusable: bool = Field(
        default=False,
        description="true: every redemption until `expires` joins (gateway replicas, agent "
        "restarts); false: the first redemption spends it",
    )


class JoinTokenOut(BaseModel):
    cluster: str
    token: str = Field(description="shown once: `<id>.<secret>`")
    id: str = Field(description="the token's public id: the part before the dot")
    reusable: bool
    expires: datetime


class JoinTokenInfo(BaseModel):
    """A join token as listed: never its secret nor the secret's digest."""

    id: str
    reusable: bool
    uses: int = Field(description="redemptions so far")
    used: bool = Field(description="a single-use token that has been redeemed")
    expires: datetime


class CaExport(BaseModel):
    cluster: str
    format: str
    files: dict[str, str]


# -- links --------------------------------------------------------------------------


class LinkIn(Input):
    a: str
    b: str
    bidirectional: bool = True
    mode: Literal["terminating", "passthrough"] = "terminating"
    namespaces: list[str] = Field(default_factory=list, description="empty: every namespace")


class LinkPatch(Input):
    """What may change on a link in place: the expiry of the credential it holds."""

    credential_expiry: datetime | None = Field(
        description="RFC 3339 time the agents' join credentials written by `meshfed link` "
        "expire; null: the link holds none",
        strict=False,  # JSON has no datetime type: accept RFC 3339 strings
    )
    revision: int | None = Field(default=None, ge=1, le=MAX_REVISION)


class ConditionOut(BaseModel):
    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str
    message: str
    last_transition_time: datetime


class LinkOut(BaseModel):
    a: str
    b: str
    bidirectional: bool
    mode: str
    namespaces: list[str]
    conditions: list[ConditionOut]
    credential_expiry: datetime | None
    revision: int


# -- services, imports, gateways, topology --------------------------------------------


class PortOut(BaseModel):
    port: int
    protocol: str
    name: str = ""
    app_protocol: str = ""


class ServiceOut(BaseModel):
    namespace: str
    name: str
    clusters: list[str]
    ports: list[PortOut]
    conflicts: list[str]


class ExportOut(BaseModel):
    cluster: str
    created: datetime
    ports: list[PortOut]
    scope: list[str]


class EndpointOut(BaseModel):
    address: str
    ports: list[PortOut]
    ready: bool
    weight: int


class HealthOut(BaseModel):
    ready: int
    total: int


class ServiceDetail(ServiceOut):
    exports: list[ExportOut]
    endpoints: dict[str, dict[str, list[EndpointOut]]] = Field(
        description="cluster -> zone -> endpoints"
    )
    health: dict[str, HealthOut] = Field(description="ready/total endpoints per cluster")


class ImportOut(BaseModel):
    namespace: str
    name: str
    ports: list[PortOut]
    clusters: list[str]
    conflicts: list[str]
    endpoints: dict[str, list[EndpointOut]] = Field(description="by exporting cluster")


class GatewayOut(BaseModel):
    cluster: str
    addresses: list[str]
    modes: list[str]
    healthy: bool | None
    region: str = Field("", description="the cluster's region; empty if unknown")
    zone: str = Field("", description="the cluster's zone; empty if unknown")
    trust_domain: str = Field(
        "", description="SPIFFE trust domain of spiffe://<td>/meshfed/gateway/<cluster>"
    )
    revision: int


class NodeOut(BaseModel):
    name: str
    region: str
    zone: str
    network: str
    trust_domain: str
    gateway_addresses: list[str]
    gateway_healthy: bool | None


class EdgeOut(BaseModel):
    a: str
    b: str
    bidirectional: bool
    mode: str
    ready: str
    conditions: list[ConditionOut]


class TopologyOut(BaseModel):
    nodes: list[NodeOut]
    edges: list[EdgeOut]


# -- static exports (VMs, static clusters) ---------------------------------------------

# etcd's default --max-txn-ops is 128 and a static export is one transaction (export,
# endpoints, audit event): docs/store.md says how to raise it; past this many, use an agent.
MAX_STATIC_ENDPOINTS = 1000
MAX_PORT = 65535


class PortIn(Input):
    port: int = Field(ge=1, le=MAX_PORT)
    protocol: Literal["TCP", "UDP", "SCTP"] = "TCP"
    name: str = Field("", description="RFC 1123 label; needed when the service has several ports")
    app_protocol: str = ""


class EndpointPortIn(Input):
    """An endpoint's target port for the service port named `name`."""

    port: int = Field(ge=1, le=MAX_PORT)
    name: str = Field("", description="the service port's name ('' for a one-port service)")


class StaticEndpointIn(Input):
    address: str = Field(description="IPv4/IPv6 address or DNS name")
    port: int | None = Field(
        default=None, ge=1, le=MAX_PORT, description="target port of the service's only port"
    )
    ports: list[EndpointPortIn] | None = Field(
        default=None, description="target ports by service port name (instead of `port`)"
    )
    zone: str | None = Field(default=None, description="default: the cluster's zone")
    ready: bool = True
    weight: int = Field(default=1, ge=0, le=1_000_000)


class ExportIn(Input):
    """A static export: the whole desired state (ports, scope, every endpoint)."""

    ports: list[PortIn] = Field(min_length=1)
    scope: list[str] = Field(
        default_factory=list, description="clusters that may import it; empty: every cluster"
    )
    endpoints: list[StaticEndpointIn] = Field(default_factory=list, max_length=MAX_STATIC_ENDPOINTS)
    revision: int | None = Field(
        default=None, ge=1, le=MAX_REVISION, description="expected revision (or If-Match)"
    )


class StaticEndpointOut(EndpointOut):
    zone: str


class ExportDetail(BaseModel):
    """One cluster's export of one service with that cluster's endpoints for it."""

    cluster: str
    namespace: str
    name: str
    created: datetime
    ports: list[PortOut]
    scope: list[str]
    endpoints: list[StaticEndpointOut]
    managed_by: Literal["static", "agent"] = Field(
        description="`agent`: held under the cluster agent's lease (read-only here)"
    )
    revision: int


# -- audit, tokens, health ------------------------------------------------------------


class EventOut(BaseModel):
    id: str
    time: datetime
    actor: str
    action: str
    target_kind: str
    target: str
    detail: str


class TokenIn(Input):
    name: str
    role: Literal["admin", "editor", "viewer"]
    ttl_seconds: int | None = Field(
        default=None, ge=1, le=MAX_TOKEN_TTL_SECONDS, description="default: no expiry"
    )


class TokenOut(BaseModel):
    name: str
    role: str
    created: datetime
    expires: datetime | None


class NewTokenOut(TokenOut):
    token: str = Field(description="shown once; use as `Authorization: Bearer <token>`")


class Status(BaseModel):
    status: str
    revision: int | None = None


# -- root rotation (docs/trust.md, runbook) -------------------------------------------


class RotationIn(Input):
    action: Literal["prepare", "activate", "retire", "abort"]
    force: bool = Field(
        default=False,
        description="activate before propagation completes / retire before one SVID "
        "lifetime after activate; never skips the intermediate check of retire",
    )


class RootOut(BaseModel):
    fingerprint_sha256: str
    subject: str
    not_before: datetime
    not_after: datetime


class RotationBundleOut(BaseModel):
    trust_domain: str
    sequence: int
    roots: list[str] = Field(description="SHA-256 fingerprints of the bundle's roots")
    has_current: bool
    has_next: bool


class RotationIntermediateOut(BaseModel):
    name: str
    trust_domain: str | None
    root: Literal["current", "next", "unknown"]
    not_after: datetime


class PropagationOut(BaseModel):
    complete: bool
    reason: str
    waited_seconds: int
    required_seconds: int
    pending: list[str] = Field(
        description="clusters whose gateway has not reported holding every published root "
        "(ReportHealth); propagation completes when none is left, or after 3 x the refresh hint"
    )


class RotationCheckOut(BaseModel):
    name: str
    ok: bool
    detail: str


class RotationOut(BaseModel):
    stage: Literal["stable", "propagating", "active"]
    stage_since: datetime
    sequence: int
    refresh_hint_seconds: int
    signing_root: Literal["current", "next"]
    current_root: RootOut
    next_root: RootOut | None
    propagation: PropagationOut
    next_action: Literal["prepare", "activate", "retire"]
    ready: bool = Field(description="whether next_action would succeed now without force")
    retire_not_before: datetime | None
    bundles: list[RotationBundleOut]
    intermediates: list[RotationIntermediateOut]
    checks: list[RotationCheckOut]


class RotationActionOut(BaseModel):
    action: str
    message: str
    rotation: RotationOut


def dump(model: BaseModel) -> dict[str, Any]:
    return model.model_dump(by_alias=True)
