"""The registry's domain model: pure, frozen, validated records (no I/O, no clock)."""

from federation.model.records import (
    KIND_BY_NAME,
    RECORD_KINDS,
    Cluster,
    Condition,
    Endpoint,
    Gateway,
    Link,
    Port,
    Record,
    ServiceExport,
    ServiceKey,
    TrustDomain,
    endpoint_prefix,
)

__all__ = [
    "KIND_BY_NAME",
    "RECORD_KINDS",
    "Cluster",
    "Condition",
    "Endpoint",
    "Gateway",
    "Link",
    "Port",
    "Record",
    "ServiceExport",
    "ServiceKey",
    "TrustDomain",
    "endpoint_prefix",
]
