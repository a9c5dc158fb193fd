"""The ingress route table: which route serves a given SNI (pure).

Why it exists: lookup rules are policy, worth testing without sockets, and must
be identical for the hot path, ``/config`` and the tests.

Lookup order for a ClientHello's server name:

1. exact match on a route's ``sni`` (case-insensitive);
2. otherwise the name is parsed (:mod:`eastwest_gateway.naming`) and matched on
   the service: same canonical host (``cluster.local`` == ``clusterset.local``),
   then the most specific of (port, subset), (port, any subset),
   (any port, any subset). A route whose own SNI names no port or subset is the
   wildcard for it.

Two routes that claim the same (canonical host, port, subset) are a configuration
error, reported when the table is built.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from eastwest_gateway.errors import ConfigError, SniFormatError
from eastwest_gateway.naming import parse_sni
from eastwest_gateway.routefile import Route

_Key = tuple[str, int | None, str | None]


@dataclass(frozen=True)
class RouteTable:
    """An immutable index of ingress routes; rebuilt (not mutated) on reload."""

    routes: tuple[Route, ...]
    _exact: Mapping[str, Route] = field(repr=False, compare=False)
    _by_key: Mapping[_Key, Route] = field(repr=False, compare=False)

    @classmethod
    def build(cls, routes: Iterable[Route]) -> RouteTable:
        ordered = tuple(routes)
        exact: dict[str, Route] = {}
        by_key: dict[_Key, Route] = {}
        for i, route in enumerate(ordered):
            sni = route.sni.lower()
            if sni in exact:
                raise ConfigError(f"routes[{i}].sni: {route.sni!r} repeats an earlier route")
            exact[sni] = route
            target = route.target
            if target is None:
                continue
            key = (target.canonical_host, target.port, target.subset)
            other = by_key.get(key)
            if other is not None:
                raise ConfigError(
                    f"routes[{i}].sni: {route.sni!r} names the same service, port and "
                    f"subset as {other.sni!r}"
                )
            by_key[key] = route
        return cls(ordered, MappingProxyType(exact), MappingProxyType(by_key))

    def lookup(self, sni: str | None) -> Route | None:
        """The route for a server name, or None (unknown or missing SNI)."""
        if sni is None:
            return None
        name = sni.lower()
        route = self._exact.get(name)
        if route is not None:
            return route
        try:
            target = parse_sni(name)
        except SniFormatError:
            return None
        host = target.canonical_host
        for key in (
            (host, target.port, target.subset),
            (host, target.port, None),
            (host, None, None),
        ):
            route = self._by_key.get(key)
            if route is not None:
                return route
        return None
