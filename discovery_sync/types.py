"""Records the discovery package passes between its parts (frozen, validated on build).

`LocalService` is what a source says one cluster offers: the `ServiceExport` and
its `Endpoint`s (meshfed's registry records) plus whether the Service is headless,
which the registry record does not carry. `ImportedService` and `ImportView` are
what the sinks and the DNS server consume: one cluster's imports with the exporting
clusters' locality and gateway health, so answers can put the nearest healthy
cluster first and leave the rest out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from federation.model import Endpoint, Port, ServiceExport, ServiceKey

# MCS ServiceImport spec.type values (multicluster.x-k8s.io ServiceImport CRD).
CLUSTERSET_IP = "ClusterSetIP"
HEADLESS = "Headless"


@dataclass(frozen=True, slots=True)
class LocalService:
    """One exported service of the local cluster with its endpoints."""

    export: ServiceExport
    endpoints: tuple[Endpoint, ...] = ()
    headless: bool = False

    @property
    def key(self) -> ServiceKey:
        return self.export.service


@dataclass(frozen=True, slots=True)
class Locality:
    """Where a cluster (or a DNS client) is: region and zone, Kubernetes topology labels."""

    region: str = ""
    zone: str = ""


@dataclass(frozen=True, slots=True)
class ClusterInfo:
    """What the importing side knows of an exporting cluster."""

    name: str
    locality: Locality = Locality()
    gateway_healthy: bool | None = None  # None: not probed yet, treated as up
    gateway_addresses: tuple[str, ...] = ()  # host:port of its east-west gateway


@dataclass(frozen=True, slots=True)
class ImportedService:
    """One service as the local cluster imports it (the MCS ServiceImport's content)."""

    service: ServiceKey
    ports: tuple[Port, ...]
    clusters: tuple[str, ...]
    endpoints: tuple[Endpoint, ...] = ()
    headless: bool = False
    ips: tuple[str, ...] = ()  # cluster-set IPs (ClusterSetIP type only)
    conflicts: tuple[str, ...] = ()
    exports: tuple[ServiceExport, ...] = ()  # the exporting clusters' records, if known

    @property
    def type(self) -> str:
        return HEADLESS if self.headless else CLUSTERSET_IP


@dataclass(frozen=True, slots=True)
class ImportView:
    """Everything one cluster imports at one registry revision."""

    cluster: str
    services: Mapping[ServiceKey, ImportedService] = field(default_factory=dict)
    clusters: Mapping[str, ClusterInfo] = field(default_factory=dict)
    revision: int = 0
