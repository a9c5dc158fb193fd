"""The registry's domain model: pure, frozen, validated records (no I/O, no clock).

`base` holds value types and the `Record` base, `topology` the federation's shape
(clusters, links, gateways, trust domains, bundle reports), `services` what clusters export, and
`access` who may do what (API tokens, join tokens, CA material, the root rotation, audit events).
"""

from federation.model.access import ApiToken, AuditEvent, CaMaterial, JoinToken, RootRotation
from federation.model.base import Condition, Port, Record, set_condition
from federation.model.services import Endpoint, ServiceExport, ServiceKey, endpoint_prefix
from federation.model.topology import BundleReport, Cluster, Gateway, Link, TrustDomain

RECORD_KINDS: tuple[type[Record], ...] = (
    Cluster,
    Link,
    ServiceExport,
    Endpoint,
    Gateway,
    TrustDomain,
    ApiToken,
    JoinToken,
    CaMaterial,
    AuditEvent,
    RootRotation,
    BundleReport,
)
KIND_BY_NAME: dict[str, type[Record]] = {k.KIND: k for k in RECORD_KINDS}

__all__ = [
    "KIND_BY_NAME",
    "RECORD_KINDS",
    "ApiToken",
    "AuditEvent",
    "BundleReport",
    "CaMaterial",
    "Cluster",
    "Condition",
    "Endpoint",
    "Gateway",
    "JoinToken",
    "Link",
    "Port",
    "Record",
    "RootRotation",
    "ServiceExport",
    "ServiceKey",
    "TrustDomain",
    "endpoint_prefix",
    "set_condition",
]
