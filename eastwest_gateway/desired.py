"""Registry mode's pure core: a Watch view in, the gateway's configuration out.

Why it exists: what a gateway should listen on and where each listener may send
traffic is policy -- link modes, locality, endpoint readiness, the registry's
view of peer health -- and it must be testable without a registry, sockets or a
clock. :func:`desired_config` is that policy; :mod:`eastwest_gateway.registry_mode`
only feeds it views and applies the :class:`~eastwest_gateway.routefile.RouteFile`
it returns through the gateway's ordinary reload path.

What the Watch of cluster X gives (docs/controlplane.md): X's *imports* (merged
ports, the exporting clusters, their endpoints), X's own *exports* with X's own
endpoints, the links with X at either end, the gateways of X and its linked
clusters (addresses, locality, trust domain, health), and the trust bundles.

Ingress rules (:func:`ingress_routes`), one route per own export and TCP port:

* SNI ``<port>.<svc>.<ns>.svc.clusterset.local``; Istio's
  ``outbound_.<port>_._.<svc>.<ns>.svc.cluster.local`` reaches the same route
  (the route table matches the parsed service);
* backends: the *ready* local endpoints, on the endpoint port that matches the
  service port (by name, else the only port of that protocol, else the same
  number), taken in turn for new connections; no ready endpoint, no route;
* importers are the peers whose link lets them import from X and covers the
  namespace. Peers on ``terminating`` links make a ``terminate`` route whose
  ``allow`` list holds each one's gateway ID ``spiffe://<td>/meshfed/gateway/<peer>``
  (trust domain from its gateway record; a peer without one is left out, noted).
  Peers on ``passthrough`` links make a ``passthrough`` route -- unless the
  service also has terminating importers: one SNI cannot be both, so it
  terminates and the passthrough peers are left out (noted), as on egress;
* the export's scope (MCS: only some clusters) is not in the view, so every
  linked importer is allowed; the registry does give an out-of-scope peer no
  import of it, so its gateway has no listener for it;
* routes from ``--local-routes`` come first and replace derived routes for the
  same SNI or the same service and port (a local route without a port replaces
  every port of its service).

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
  probes still decide DOWN (skipped) for itself;
* a candidate's locality is its gateway record's region and zone; for a record
  without them (an older registry) it is inferred from its endpoints' zones
  (:func:`candidate_locality`);
* originating listeners expect the peer gateway's SPIFFE ID (from its trust
  domain) on the upstream certificate.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from eastwest_gateway.errors import ConfigError
from eastwest_gateway.naming import meshfed_sni, parse_sni
from eastwest_gateway.routefile import (
    MAX_PORT,
    EgressMode,
    EgressRoute,
    HostPort,
    Locality,
    Mode,
    Route,
    RouteFile,
    TlsFiles,
    UpstreamCluster,
    parse_host_port,
    parse_route_document,
)
from federation.client import Items
from federation.model import Endpoint, Gateway, Port
from federation.model.imports import ServiceImport
from trust_bundle import gateway_id

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
    ingress: tuple[Route, ...] = ()  # --local-routes: override / add to the derived ones
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


def importer_modes(items: Items, cluster: str, namespace: str) -> dict[str, str]:
    """peer cluster -> mode of the link through which it imports ``cluster``'s
    exports in ``namespace`` (link direction and namespace list respected)."""
    modes: dict[str, str] = {}
    for link in items.links.values():
        if cluster not in (link.a, link.b):
            continue
        peer = link.b if link.a == cluster else link.a
        if link.imports(peer, cluster) and (not link.namespaces or namespace in link.namespaces):
            modes[peer] = link.mode
    return modes


def expected_gateway_id(gateway: Gateway | None) -> str:
    """``spiffe://<td>/meshfed/gateway/<cluster>``, or "" when the trust domain is unknown."""
    if gateway is None or not gateway.trust_domain:
        return ""
    return str(gateway_id(gateway.trust_domain, gateway.cluster))


def endpoint_port(endpoint: Endpoint, port: Port) -> int | None:
    """The endpoint's port that serves service port ``port`` (EndpointSlice semantics:
    the same name; failing that the only port of the protocol, or the same number)."""
    same_protocol = [p for p in endpoint.ports if p.protocol == port.protocol]
    if port.name:
        named = [p for p in same_protocol if p.name == port.name]
        if named:
            return named[0].port
    if len(same_protocol) == 1:
        return same_protocol[0].port
    return port.port if any(p.port == port.port for p in same_protocol) else None


def _backends(exp: ServiceImport, port: Port) -> tuple[HostPort, ...]:
    out: list[HostPort] = []
    for ep in exp.endpoints:
        target = endpoint_port(ep, port) if ep.ready else None
        if target is not None:
            out.append(HostPort(ep.address, target))
    return tuple(dict.fromkeys(out))


def _overrides(local: Route, derived: Route) -> bool:
    """Does a ``--local-routes`` route replace a route derived from the registry?"""
    if local.sni == derived.sni:
        return True
    mine, theirs = local.target, derived.target
    if mine is None or theirs is None or mine.subset is not None:
        return False
    return mine.canonical_host == theirs.canonical_host and mine.port in (None, theirs.port)


def ingress_routes(items: Items, local: LocalConfig, notes: list[str]) -> tuple[Route, ...]:
    """Routes for this cluster's own exports (see the module docstring), after the local ones."""
    derived: list[Route] = []
    for key in sorted(items.exports, key=str):
        exp = items.exports[key]
        label = f"ingress {key}"
        allow: list[str] = []
        passthrough: list[str] = []
        for peer, mode in sorted(importer_modes(items, local.cluster, key.namespace).items()):
            if mode == PASSTHROUGH:
                passthrough.append(peer)
                continue
            spiffe_id = expected_gateway_id(items.gateways.get(peer))
            if spiffe_id:
                allow.append(spiffe_id)
            else:
                notes.append(f"{label}: {peer}'s gateway trust domain is unknown; not allowed")
        if allow and passthrough:
            notes.append(
                f"{label}: {', '.join(passthrough)} on passthrough links left out: "
                "the route terminates mTLS"
            )
        if not allow and not passthrough:
            continue  # nobody imports it (or nobody identifiable): no route to open
        for port in exp.ports:
            where = f"{label} port {port.port}/{port.protocol}"
            if port.protocol != "TCP":
                notes.append(f"{where}: only TCP is carried")
                continue
            backends = _backends(exp, port)
            if not backends:
                notes.append(f"{where}: no ready endpoint; no route")
                continue
            sni = meshfed_sni(key.name, key.namespace, port.port)
            derived.append(
                Route(
                    sni=sni,
                    backend=backends[0],
                    mode=Mode.TERMINATE if allow else Mode.PASSTHROUGH,
                    allow=tuple(allow),
                    target=parse_sni(sni),
                    more_backends=backends[1:],
                )
            )
    kept = [r for r in derived if not any(_overrides(mine, r) for mine in local.ingress)]
    return (*local.ingress, *kept)


def candidate_locality(endpoints: Sequence[Endpoint], own: Locality) -> Locality:
    """A peer cluster's locality inferred from its endpoints (for a gateway record
    written before records carried region and zone).

    The zone is the most common zone of its (ready first) endpoints. Without a
    region to go on, zone names are unique within a provider (``eu-west1-b``),
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


def gateway_locality(gw: Gateway, eps: Sequence[Endpoint], own: Locality) -> Locality:
    """The peer's locality: its gateway record's, else inferred from its endpoints."""
    if gw.region or gw.zone:
        return Locality(region=gw.region, zone=gw.zone)
    return candidate_locality(eps, own)


def _upstream(
    name: str, imp: ServiceImport, eps: Sequence[Endpoint], gw: Gateway, own: Locality
) -> UpstreamCluster:
    ready = [e for e in eps if e.ready]
    return UpstreamCluster(
        name=name,
        locality=gateway_locality(gw, eps, own),
        gateways=gateway_addresses(gw, f"gateways[{name}]"),
        weight=max(1, sum(e.weight for e in ready)),
        priority=UNHEALTHY_PRIORITY if gw.healthy is False else 0,
        ready_endpoints=len(ready),
        spiffe_id=expected_gateway_id(gw),
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
    routes = ingress_routes(items, local, notes)
    route_file = RouteFile(
        routes=routes, egress=tuple(egress), tls=local.tls, locality=local.locality
    )
    return Desired(route_file, tuple(notes))
