"""A cluster's Watch view of the store, and how store changes move it: pure, no I/O.

Why this module exists: turning the store's change feed into what one cluster
may see (its imports filtered by link and export scope via `federation.model.imports`,
its links, its peers' gateways, the trust bundles) is the heart of Watch and the
part worth testing exhaustively, so it is data in, data out. `federation.
controlplane.watch` only moves bytes between the store feed and the stream.

The view is a set of items, each with a key:
  imports   namespace/name -> ServiceImport (ports merged, endpoints of visible clusters)
  links     a/b            -> Link, for links with the cluster at either end
  gateways  cluster        -> Gateway, of the cluster itself and every linked cluster
  bundles   trust domain   -> TrustDomain (roots are public: every domain is sent)
A delta carries whole items (upserts) and keys (removals), so a client applies it
without knowing anything else, and applying one twice is harmless.

Recomputing only what a change touched keeps a delta cheap: an endpoint change
re-merges one service; only a link change (which can change every import and
the gateway set) recomputes the whole view.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from federation.model import (
    Endpoint,
    Gateway,
    Link,
    Record,
    ServiceExport,
    ServiceKey,
    TrustDomain,
)
from federation.model.imports import ServiceImport, imports_for
from federation.store.typed import Change

K = TypeVar("K")
V = TypeVar("V")

# The record kinds a Watch view is made of; changes to other kinds are ignored.
KINDS = frozenset({ServiceExport.KIND, Endpoint.KIND, Link.KIND, Gateway.KIND, TrustDomain.KIND})


@dataclass(frozen=True, slots=True)
class View:
    """What one cluster sees; also used for the upserted half of a delta."""

    imports: Mapping[ServiceKey, ServiceImport] = field(default_factory=dict)
    links: Mapping[str, Link] = field(default_factory=dict)
    gateways: Mapping[str, Gateway] = field(default_factory=dict)
    bundles: Mapping[str, TrustDomain] = field(default_factory=dict)
    exports: Mapping[ServiceKey, ServiceImport] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.imports or self.links or self.gateways or self.bundles or self.exports)


@dataclass(frozen=True, slots=True)
class Removals:
    imports: tuple[ServiceKey, ...] = ()
    links: tuple[str, ...] = ()
    gateways: tuple[str, ...] = ()
    bundles: tuple[str, ...] = ()
    exports: tuple[ServiceKey, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.imports or self.links or self.gateways or self.bundles or self.exports)


@dataclass(frozen=True, slots=True)
class Delta:
    upserted: View = field(default_factory=View)
    removed: Removals = field(default_factory=Removals)

    def __bool__(self) -> bool:
        return bool(self.upserted or self.removed)


@dataclass(slots=True)
class Touched:
    """Which view items a batch of store changes may have moved."""

    services: set[ServiceKey] = field(default_factory=set)
    gateways: set[str] = field(default_factory=set)
    bundles: set[str] = field(default_factory=set)
    links: bool = False  # a link changed: anything may have

    def update(self, other: Touched) -> None:
        self.services |= other.services
        self.gateways |= other.gateways
        self.bundles |= other.bundles
        self.links = self.links or other.links


def _service_of(key: str) -> ServiceKey:
    """Exports are keyed ns/name/cluster, endpoints ns/name/cluster/address."""
    namespace, name, _ = key.split("/", 2)
    return ServiceKey(namespace, name)


def touched_by(changes: Iterable[Change]) -> Touched:
    """The view items `changes` may move, from their keys alone."""
    touched = Touched()
    for change in changes:
        if change.kind in (ServiceExport.KIND, Endpoint.KIND):
            touched.services.add(_service_of(change.key))
        elif change.kind == Link.KIND:
            touched.links = True
        elif change.kind == Gateway.KIND:
            touched.gateways.add(change.key)
        elif change.kind == TrustDomain.KIND:
            touched.bundles.add(change.key)
    return touched


class Index:
    """The store records a view is computed from, indexed by service. No I/O."""

    def __init__(self, records: Iterable[Record] = ()) -> None:
        self.links: dict[str, Link] = {}
        self.exports: dict[ServiceKey, dict[str, ServiceExport]] = {}
        self.endpoints: dict[ServiceKey, dict[str, Endpoint]] = {}
        self.gateways: dict[str, Gateway] = {}
        self.bundles: dict[str, TrustDomain] = {}
        for record in records:
            self.put(record)

    def put(self, record: Record) -> None:
        if isinstance(record, Endpoint):
            self.endpoints.setdefault(record.service_key, {})[record.key] = record
        elif isinstance(record, ServiceExport):
            self.exports.setdefault(record.service, {})[record.key] = record
        elif isinstance(record, Link):
            self.links[record.key] = record
        elif isinstance(record, Gateway):
            self.gateways[record.key] = record
        elif isinstance(record, TrustDomain):
            self.bundles[record.key] = record

    def delete(self, kind: str, key: str) -> None:
        if kind in (Endpoint.KIND, ServiceExport.KIND):
            table = self.endpoints if kind == Endpoint.KIND else self.exports
            service = _service_of(key)
            held = table.get(service)
            if held is not None:
                held.pop(key, None)
                if not held:
                    del table[service]
        elif kind == Link.KIND:
            self.links.pop(key, None)
        elif kind == Gateway.KIND:
            self.gateways.pop(key, None)
        elif kind == TrustDomain.KIND:
            self.bundles.pop(key, None)

    def apply(self, changes: Iterable[Change]) -> None:
        for change in changes:
            if change.kind not in KINDS:
                continue
            if change.record is None:
                self.delete(change.kind, change.key)
            else:
                self.put(change.record)


def own_links(cluster: str, index: Index) -> dict[str, Link]:
    return {k: link for k, link in index.links.items() if cluster in (link.a, link.b)}


def peers(cluster: str, links: Iterable[Link]) -> set[str]:
    """The cluster itself and every cluster it is linked with (either direction)."""
    out = {cluster}
    for link in links:
        out.add(link.b if link.a == cluster else link.a)
    return out


def service_import(cluster: str, index: Index, service: ServiceKey) -> ServiceImport | None:
    """What `cluster` imports of one service, or None when it sees no export of it."""
    links = own_links(cluster, index).values()
    found = imports_for(
        cluster,
        links,
        index.exports.get(service, {}).values(),
        index.endpoints.get(service, {}).values(),
    )
    return found.get(service)


def own_export(cluster: str, index: Index, service: ServiceKey) -> ServiceImport | None:
    """`cluster`'s own export of `service` with its own endpoints (for its gateway)."""
    export = next(
        (e for e in index.exports.get(service, {}).values() if e.cluster == cluster), None
    )
    if export is None:
        return None
    endpoints = tuple(
        sorted(
            (e for e in index.endpoints.get(service, {}).values() if e.cluster == cluster),
            key=lambda e: e.key,
        )
    )
    return ServiceImport(cluster, service, export.ports, (cluster,), (), endpoints)


def own_exports(cluster: str, index: Index) -> dict[ServiceKey, ServiceImport]:
    found = (own_export(cluster, index, service) for service in sorted(index.exports, key=str))
    return {e.service: e for e in found if e is not None}


def view_of(cluster: str, index: Index) -> View:
    """The whole view of `cluster`."""
    links = own_links(cluster, index)
    exports = [e for held in index.exports.values() for e in held.values()]
    endpoints = [e for held in index.endpoints.values() for e in held.values()]
    seen = peers(cluster, links.values())
    return View(
        imports=imports_for(cluster, links.values(), exports, endpoints),
        links=dict(sorted(links.items())),
        gateways={k: g for k, g in sorted(index.gateways.items()) if k in seen},
        bundles=dict(sorted(index.bundles.items())),
        exports=own_exports(cluster, index),
    )


def _diff_table(
    old: Mapping[K, V], new: Mapping[K, V], keys: Iterable[K] | None = None
) -> tuple[dict[K, V], tuple[K, ...]]:
    """Items of `new` that differ from `old`, and keys gone from it (only `keys` if given)."""
    upserted: dict[K, V] = {}
    removed: list[K] = []
    for key in keys if keys is not None else old.keys() | new.keys():
        now = new.get(key)
        if now is None:
            if key in old:
                removed.append(key)
        elif old.get(key) != now:
            upserted[key] = now
    return upserted, tuple(sorted(removed, key=str))


def diff(old: View, new: View, touched: Touched | None = None) -> Delta:
    """What turns `old` into `new`; with `touched`, only those items can differ."""
    imports, gone_imports = _diff_table(
        old.imports, new.imports, touched.services if touched else None
    )
    links, gone_links = _diff_table(old.links, new.links, () if touched else None)
    gateways, gone_gateways = _diff_table(
        old.gateways, new.gateways, touched.gateways if touched else None
    )
    bundles, gone_bundles = _diff_table(
        old.bundles, new.bundles, touched.bundles if touched else None
    )
    exports, gone_exports = _diff_table(
        old.exports, new.exports, touched.services if touched else None
    )
    return Delta(
        View(imports, links, gateways, bundles, exports),
        Removals(gone_imports, gone_links, gone_gateways, gone_bundles, gone_exports),
    )


def partial_view(cluster: str, index: Index, old: View, touched: Touched) -> View:
    """`old` with the touched items recomputed (only valid when no link changed)."""
    assert not touched.links, "a link change needs view_of"
    imports = dict(old.imports)
    for service in touched.services:
        imp = service_import(cluster, index, service)
        if imp is None:
            imports.pop(service, None)
        else:
            imports[service] = imp
    gateways = dict(old.gateways)
    seen = peers(cluster, old.links.values())
    for name in touched.gateways:
        gw = index.gateways.get(name)
        if gw is None or name not in seen:
            gateways.pop(name, None)
        else:
            gateways[name] = gw
    bundles = dict(old.bundles)
    for name in touched.bundles:
        td = index.bundles.get(name)
        if td is None:
            bundles.pop(name, None)
        else:
            bundles[name] = td
    exports = dict(old.exports)
    for service in touched.services:
        own = own_export(cluster, index, service)
        if own is None:
            exports.pop(service, None)
        else:
            exports[service] = own
    return View(imports, old.links, gateways, bundles, exports)


def items(view: View, touched: Touched) -> Delta:
    """The touched items as they are in `view`: present ones upserted, absent ones removed.

    This is how a resuming watcher catches up: the server does not know what the
    watcher holds, only which items changed since its revision.
    """
    assert not touched.links, "a link change needs a snapshot"
    imports = {k: view.imports[k] for k in touched.services if k in view.imports}
    gateways = {k: view.gateways[k] for k in touched.gateways if k in view.gateways}
    bundles = {k: view.bundles[k] for k in touched.bundles if k in view.bundles}
    exports = {k: view.exports[k] for k in touched.services if k in view.exports}
    return Delta(
        View(imports, {}, gateways, bundles, exports),
        Removals(
            tuple(sorted(touched.services - imports.keys(), key=str)),
            (),
            tuple(sorted(touched.gateways - gateways.keys())),
            tuple(sorted(touched.bundles - bundles.keys())),
            tuple(sorted(touched.services - exports.keys(), key=str)),
        ),
    )


class Projector:
    """One watcher's view, moved along by store changes. Pure: no I/O, no clock."""

    def __init__(self, cluster: str, records: Iterable[Record] = ()) -> None:
        self.cluster = cluster
        self.index = Index(records)
        self.view = view_of(cluster, self.index)

    def apply(self, changes: Iterable[Change]) -> Delta:
        """Apply one store revision's changes; the delta for the watcher (maybe empty)."""
        changes = tuple(c for c in changes if c.kind in KINDS)
        if not changes:
            return Delta()
        touched = touched_by(changes)
        self.index.apply(changes)
        if touched.links:
            new = view_of(self.cluster, self.index)
            delta = diff(self.view, new)
        else:
            new = partial_view(self.cluster, self.index, self.view, touched)
            delta = diff(self.view, new, touched)
        self.view = new
        return delta
