"""Registry mode's pure core: a Watch view in, the gateway's configuration out.

Why it exists: what a gateway should listen on and where each listener may send
traffic is policy -- link modes, locality, endpoint readiness, the registry's
view of peer health -- and it must be testable without a registry, sockets or a
clock. :func:`desired_config` is that policy; :mod:`eastwest_gateway.registry_mode`
only feeds it views and applies the :class:`~eastwest_gateway.routefile.RouteFile`
it returns through the gateway's ordinary reload path.

What the Watch of cluster X gives (docs/controlplane.md): X's *imports* (merged
ports, the exporting clusters, their endpoints), the links with X at either end,
the gateways of X and its linked clusters, and the trust bundles. It does **not**
give X's own exports or endpoints, so X's ingress routes come from a local file
(:func:`parse_local_document`); nor does it give clusters' regions, so a
candidate's locality is inferred (see :func:`candidate_locality`).

Egress rules, one listener per imported (service, TCP port):

* listen on ``egress_host:(port + egress_port_offset)``; a later service (in
  ``namespace/name`` order) whose port is already taken gets no listener and a note;
* candidates are the exporting clusters with a gateway record; the link's mode
  picks the listener's mode -- ``terminating`` links are reached by originating
  mTLS with the gateway's SVID (the local client speaks plaintext),
  ``passthrough`` links by relaying the client's own TLS. One listener cannot be
  both: if a service is exported over both kinds of link, the listener originates
  and the passthrough clusters are left out (with a note);
* ``ready_endpoints`` is the number of ready endpoints of the service in that
  cluster, ``weight`` the sum of their weights (at least 1), so load within a
  locality follows capacity (Envoy/Istio locality weighting);
* a peer gateway the registry reports unhealthy (every prober failed) gets
  ``priority`` 1: used only when no better cluster is left. The gateway's own
  probes still decide DOWN (skipped) for itself.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from eastwest_gateway.errors import ConfigError
from eastwest_gateway.naming import meshfed_sni
from eastwest_gateway.routefile import (
    MAX_PORT,
    EgressMode,
    EgressRoute,
    HostPort,
    Locality,
    Route,
    RouteFile,
    TlsFiles,
    UpstreamCluster,
    parse_host_port,
    parse_route_document,
)
from federation.client import Items
from federation.model import Endpoint, Gateway
from federation.model.imports import ServiceImport

TERMINATING: Final = "terminating"
PASSTHROUGH: Final = "passthrough"
UNHEALTHY_PRIORITY: Final = 1  # below every healthy or unknown peer; still a last resort
LOCAL_KEYS: Final = frozenset({"locality", "routes"})


@dataclass(frozen=True, slots=True)
class LocalConfig:
    """What this gateway knows about itself that the registry does not send."""

    cluster: str
    locality: Locality
    tls: TlsFiles  # the SVID, key and trust bundle files kept in the state directory
    ingress: tuple[Route, ...] = ()
    egress_host: str = "127.0.0.1"
    egress_port_offset: int = 0


@dataclass(frozen=True, slots=True)
class Desired:
    """The configuration to apply, and what was left out of it and why."""

    route_file: RouteFile
    notes: tuple[str, ...] = ()


def parse_local_document(
    doc: object, base_dir: Path, tls: TlsFiles
) -> tuple[tuple[Route, ...], Locality | None]:
    """The ``--local-routes`` file: ``locality`` and ingress ``routes`` (route-file format).

    ``tls`` and ``egress`` are refused: in registry mode the SVID is the TLS
    identity and egress comes from the registry.
    """
    if doc is None:
        return (), None
    if not isinstance(doc, Mapping):
        raise ConfigError(f"expected a mapping, got {type(doc).__name__}")
    unknown = sorted(str(k) for k in doc if k not in LOCAL_KEYS)
    if unknown:
        raise ConfigError(
            f"{unknown[0]}: unknown field (a registry-mode local file has only locality, routes)"
        )
    full = {
        "routes": [],
        **doc,
        "tls": {"cert": str(tls.cert), "key": str(tls.key), "ca": str(tls.ca)},
    }
    parsed = parse_route_document(full, base_dir)
    return parsed.routes, parsed.locality


def link_modes(items: Items, cluster: str) -> dict[str, str]:
    """peer cluster -> mode of the link through which ``cluster`` imports from it."""
    modes: dict[str, str] = {}
    for link in items.links.values():
        if cluster not in (link.a, link.b):
            continue
        peer = link.b if link.a == cluster else link.a
        if link.imports(cluster, peer):
            modes[peer] = link.mode
    return modes


def candidate_locality(endpoints: Sequence[Endpoint], own: Locality) -> Locality:
    """A peer cluster's locality as far as the Watch reveals it.

    The zone is the most common zone of its (ready first) endpoints. The Watch
    carries no region; zone names are unique within a provider (``eu-west1-b``),
    so a peer in our own zone is in our region, any other is ranked as another
    region.
    """
    pool = [e for e in endpoints if e.ready] or list(endpoints)
    counts = Counter(e.zone for e in pool if e.zone)
    if not counts:
        return Locality(region="", zone="")
    zone = min(counts, key=lambda z: (-counts[z], z))
    return Locality(region=own.region if zone == own.zone else "", zone=zone)


def gateway_addresses(gateway: Gateway, where: str) -> tuple[HostPort, ...]:
    return tuple(
        parse_host_port(a, f"{where}.addresses[{i}]") for i, a in enumerate(gateway.addresses)
    )


def _upstream(
    name: str, imp: ServiceImport, eps: Sequence[Endpoint], gw: Gateway, own: Locality
) -> UpstreamCluster:
    ready = [e for e in eps if e.ready]
    return UpstreamCluster(
        name=name,
        locality=candidate_locality(eps, own),
        gateways=gateway_addresses(gw, f"gateways[{name}]"),
        weight=max(1, sum(e.weight for e in ready)),
        priority=UNHEALTHY_PRIORITY if gw.healthy is False else 0,
        ready_endpoints=len(ready),
    )


def _egress_for_import(
    imp: ServiceImport,
    items: Items,
    local: LocalConfig,
    modes: Mapping[str, str],
    notes: list[str],
) -> tuple[EgressMode, tuple[UpstreamCluster, ...]] | None:
    label = str(imp.service)
    by_cluster = imp.endpoints_by_cluster()
    originate: list[UpstreamCluster] = []
    passthrough: list[UpstreamCluster] = []
    for name in imp.clusters:
        gw = items.gateways.get(name)
        mode = modes.get(name)
        if gw is None:
            notes.append(f"{label}: cluster {name} has no gateway record in the registry")
            continue
        if mode is None:
            notes.append(f"{label}: no link through which {local.cluster} imports from {name}")
            continue
        try:
            upstream = _upstream(name, imp, by_cluster.get(name, ()), gw, local.locality)
        except ConfigError as exc:
            notes.append(f"{label}: cluster {name}: {exc}")
            continue
        (passthrough if mode == PASSTHROUGH else originate).append(upstream)
    if originate:
        if passthrough:
            names = ", ".join(c.name for c in passthrough)
            notes.append(
                f"{label}: {names} on passthrough links left out: the listener originates mTLS"
            )
        return EgressMode.ORIGINATE, tuple(originate)
    if passthrough:
        return EgressMode.PASSTHROUGH, tuple(passthrough)
    return None


def desired_config(items: Items, local: LocalConfig) -> Desired:
    """The gateway configuration for this Watch view (see the module docstring)."""
    notes: list[str] = []
    modes = link_modes(items, local.cluster)
    egress: list[EgressRoute] = []
    taken: dict[HostPort, str] = {}
    for key in sorted(items.imports, key=str):
        imp = items.imports[key]
        chosen = _egress_for_import(imp, items, local, modes, notes)
        if chosen is None:
            notes.append(f"{key}: no reachable exporting cluster; no listener")
            continue
        mode, clusters = chosen
        for port in imp.ports:
            where = f"{key} port {port.port}/{port.protocol}"
            if port.protocol != "TCP":
                notes.append(f"{where}: only TCP is carried")
                continue
            listen_port = port.port + local.egress_port_offset
            if not 0 < listen_port <= MAX_PORT:
                notes.append(f"{where}: listen port {listen_port} is out of range")
                continue
            listen = HostPort(local.egress_host, listen_port)
            if listen in taken:
                notes.append(f"{where}: {listen} is already the listener of {taken[listen]}")
                continue
            taken[listen] = f"{key} port {port.port}"
            egress.append(
                EgressRoute(
                    listen=listen,
                    sni=meshfed_sni(key.name, key.namespace, port.port),
                    mode=mode,
                    clusters=clusters,
                )
            )
    route_file = RouteFile(
        routes=local.ingress, egress=tuple(egress), tls=local.tls, locality=local.locality
    )
    return Desired(route_file, tuple(notes))
