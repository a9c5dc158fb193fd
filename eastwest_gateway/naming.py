"""The server names (SNI) that address a service through an east-west gateway.

Why it exists: a gateway in passthrough mode never sees the request, only the
server name of the TLS connection, so the name *is* the address. Two formats are
understood, and both parse into one typed :class:`ServiceTarget`:

Istio (what an Istio sidecar sends to an AUTO_PASSTHROUGH east-west gateway)::

    outbound_.<port>_.<subset>_.<host>      e.g. outbound_.8443_._.echo.demo.svc.cluster.local
                                            (subset "" -- written "_._." -- means none)

meshfed (what meshfed's egress and mesh-less clients send)::

    [<port>.]<svc>.<ns>.svc.clusterset.local  e.g. 8443.echo.demo.svc.clusterset.local
                                              or echo.demo.svc.clusterset.local

A service name is an RFC 1035 label and so starts with a letter (Kubernetes
validation); an all-digit first label is therefore unambiguously a port. Without
a port the name addresses every port of the service.

For matching, Kubernetes hosts in ``cluster.local`` and ``clusterset.local`` are
the same service (Istio clients name a remote service by its cluster.local name;
MCS clients by its clusterset.local name): :attr:`ServiceTarget.canonical_host`
normalises both to ``<svc>.<ns>.svc.clusterset.local``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, Literal

from eastwest_gateway.errors import SniFormatError

ISTIO_PREFIX: Final = "outbound_."
ISTIO_SEPARATOR: Final = "_."
CLUSTERSET_DOMAIN: Final = "clusterset.local"  # KEP-1645 (Multi-Cluster Services API)
CLUSTER_DOMAIN: Final = "cluster.local"  # Kubernetes' default cluster domain
KUBERNETES_DOMAINS: Final = (CLUSTERSET_DOMAIN, CLUSTER_DOMAIN)
MAX_PORT: Final = 65535  # RFC 793: ports are 16-bit
# RFC 1123 label (namespaces) and RFC 1035 label (service names), as Kubernetes
# validates them: lower-case alphanumerics and '-', at most 63 characters.
_DNS1123_LABEL: Final = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
_DNS1035_LABEL: Final = re.compile(r"[a-z]([a-z0-9-]{0,61}[a-z0-9])?")
# Istio subset names are DestinationRule subset names: RFC 1123 labels.
_HOST: Final = re.compile(
    r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)*"
)

SniFlavor = Literal["istio", "meshfed"]


@dataclass(frozen=True, slots=True)
class ServiceTarget:
    """A service (and optionally port and subset) named by an SNI."""

    host: str
    port: int | None
    subset: str | None
    flavor: SniFlavor
    service: str | None = None
    namespace: str | None = None

    @property
    def canonical_host(self) -> str:
        """``<svc>.<ns>.svc.clusterset.local`` for Kubernetes hosts, else the host."""
        if self.service is not None and self.namespace is not None:
            return f"{self.service}.{self.namespace}.svc.{CLUSTERSET_DOMAIN}"
        return self.host

    @property
    def label(self) -> str:
        """Short name for metrics and logs: ``<ns>/<svc>`` or the host."""
        if self.service is not None and self.namespace is not None:
            return f"{self.namespace}/{self.service}"
        return self.host


def parse_sni(sni: str) -> ServiceTarget:
    """Parse an SNI in Istio's or meshfed's format; :class:`SniFormatError` otherwise."""
    name = sni.lower()
    if name.startswith(ISTIO_PREFIX):
        return _parse_istio(name)
    return _parse_meshfed(name)


def _parse_port(text: str, sni: str) -> int:
    if not text.isdigit() or len(text) > 5 or not 1 <= int(text) <= MAX_PORT:
        raise SniFormatError(f"{sni!r}: port {text!r} is not in 1..{MAX_PORT}")
    return int(text)


def _parse_istio(sni: str) -> ServiceTarget:
    parts = sni[len(ISTIO_PREFIX) :].split(ISTIO_SEPARATOR, 2)
    if len(parts) != 3:
        raise SniFormatError(f"{sni!r}: expected outbound_.<port>_.<subset>_.<host>")
    port_text, subset, host = parts
    port = _parse_port(port_text, sni)
    if subset and not _DNS1123_LABEL.fullmatch(subset):
        raise SniFormatError(f"{sni!r}: subset {subset!r} is not an RFC 1123 label")
    if not host or len(host) > 253 or not _HOST.fullmatch(host):
        raise SniFormatError(f"{sni!r}: host {host!r} is not a DNS name")
    service, namespace = _kubernetes_parts(host)
    return ServiceTarget(
        host=host,
        port=port,
        subset=subset or None,
        flavor="istio",
        service=service,
        namespace=namespace,
    )


def _kubernetes_parts(host: str) -> tuple[str | None, str | None]:
    for domain in KUBERNETES_DOMAINS:
        suffix = f".svc.{domain}"
        if host.endswith(suffix):
            labels = host[: -len(suffix)].split(".")
            if (
                len(labels) == 2
                and _DNS1035_LABEL.fullmatch(labels[0])
                and _DNS1123_LABEL.fullmatch(labels[1])
            ):
                return labels[0], labels[1]
    return None, None


def _parse_meshfed(sni: str) -> ServiceTarget:
    suffix = f".svc.{CLUSTERSET_DOMAIN}"
    if not sni.endswith(suffix):
        raise SniFormatError(
            f"{sni!r}: neither outbound_.<port>_.<subset>_.<host> (Istio) "
            f"nor [<port>.]<svc>.<ns>{suffix} (meshfed)"
        )
    labels = sni[: -len(suffix)].split(".")
    port: int | None = None
    if len(labels) == 3:
        port = _parse_port(labels[0], sni)
        labels = labels[1:]
    if len(labels) != 2:
        raise SniFormatError(f"{sni!r}: expected [<port>.]<svc>.<ns>{suffix}")
    service, namespace = labels
    if not _DNS1035_LABEL.fullmatch(service):
        raise SniFormatError(f"{sni!r}: service {service!r} is not an RFC 1035 label")
    if not _DNS1123_LABEL.fullmatch(namespace):
        raise SniFormatError(f"{sni!r}: namespace {namespace!r} is not an RFC 1123 label")
    return ServiceTarget(
        host=f"{service}.{namespace}{suffix}",
        port=port,
        subset=None,
        flavor="meshfed",
        service=service,
        namespace=namespace,
    )


def meshfed_sni(service: str, namespace: str, port: int | None = None) -> str:
    """Format meshfed's SNI for a service (and port); round-trips through parse_sni."""
    name = f"{service}.{namespace}.svc.{CLUSTERSET_DOMAIN}"
    return name if port is None else f"{port}.{name}"


def istio_sni(host: str, port: int, subset: str | None = None) -> str:
    """Format Istio's outbound SNI; round-trips through parse_sni."""
    return f"{ISTIO_PREFIX}{port}{ISTIO_SEPARATOR}{subset or ''}{ISTIO_SEPARATOR}{host}"
