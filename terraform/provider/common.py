"""What the resources and data sources share: errors as diagnostics, and reconciling reads.

Why this module exists: two rules must hold for every object the provider
manages, and they are easy to get subtly wrong per resource:

* An API error becomes a Terraform diagnostic carrying the registry's own words
  (`detail`), pointing at the attribute the registry named (`field`) when that is
  one of the resource's attributes.
* After apply, plan shows no changes. The registry canonicalises some values
  (sorts namespaces, lower-cases hosts, fills defaults), while Terraform insists
  that what it planned from the configuration is what it keeps. So a read keeps
  the value Terraform already holds whenever the registry's value means the same
  thing, and an attribute left unset (null) stays null while the registry holds
  that attribute's default.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from terraform.provider.client import ApiError, Client


class Diagnostics(Protocol):
    """The part of `tf.utils.Diagnostics` the provider uses."""

    def add_error(self, summary: str, detail: str = "", path: list[Any] | None = None) -> Any: ...

    def add_warning(self, summary: str, detail: str = "", path: list[Any] | None = None) -> Any: ...


class Context(Protocol):
    """`tf`'s per-call context: the diagnostics to add to and the type name."""

    diagnostics: Diagnostics
    type_name: str


class HasClient(Protocol):
    """The configured provider, as resources see it."""

    def api(self, diags: Diagnostics) -> Client | None: ...


def is_unknown(value: Any) -> bool:
    """True for `tf`'s Unknown marker (checked by type name so nothing is imported)."""
    return type(value).__name__ == "_Unknown"


def known(value: Any) -> bool:
    return value is not None and not is_unknown(value)


def report(diags: Diagnostics, exc: ApiError, action: str, attributes: Iterable[str]) -> None:
    """Add `exc` as an error diagnostic; the registry's message is the detail, verbatim."""
    field = (exc.field or "").split("[", 1)[0].split(".", 1)[0]
    where = [field] if field and field in set(attributes) else None
    diags.add_error(f"{exc.summary()}: cannot {action}", exc.detail, path=where)


def canonical_host_port(text: str) -> str:
    """`host:port` as the registry stores it: lower-case names, canonical IP addresses."""
    import ipaddress  # lazy: only reads with gateway addresses need it

    host, sep, port = text.rpartition(":")
    host = host.strip("[]").lower()
    with contextlib.suppress(ValueError):
        host = str(ipaddress.ip_address(host))
    shown = f"[{host}]" if ":" in host else host
    return f"{shown}{sep}{port}" if sep else text.lower()


def same_set(a: Any, b: Any) -> bool:
    """Lists the registry stores sorted and de-duplicated (namespaces)."""
    return sorted(set(a)) == sorted(set(b))


def same_host_ports(a: Any, b: Any) -> bool:
    return [canonical_host_port(x) for x in a] == [canonical_host_port(x) for x in b]


Equivalence = Callable[[Any, Any], bool]


def reconcile(
    server: Mapping[str, Any],
    prior: Mapping[str, Any],
    fields: Iterable[str],
    defaults: Mapping[str, Any],
    equivalent: Mapping[str, Equivalence] | None = None,
) -> dict[str, Any]:
    """The user-settable `fields` of a state read from `server`, given the `prior` state.

    Unset (null) stays null while the registry holds the default; a prior value the
    registry only canonicalised is kept; any other difference is real drift.
    """
    same = equivalent or {}
    out: dict[str, Any] = {}
    for name in fields:
        held, now = prior.get(name), server.get(name)
        if not known(held):
            out[name] = None if name in defaults and now == defaults[name] else now
        elif held == now or (name in same and now is not None and same[name](held, now)):
            out[name] = held
        else:
            out[name] = now
    return out


def fill_unknowns(state: dict[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """`state` with every Unknown replaced by `values`' entry (or null)."""
    return {k: (values.get(k) if is_unknown(v) else v) for k, v in state.items()}


class ApiValidatedResource:
    """What every meshfed resource answers the same way, inherited instead of copied.

    Validation is the registry's (it speaks at apply as a diagnostic); there is no
    old state version to upgrade; and an update plan changes nothing computed (in
    place via PATCH/PUT, or a replacement Terraform plans itself).
    """

    def validate(self, diags: Any, type_name: str, config: dict[str, Any]) -> None:
        """Nothing beyond the schema: the registry's own validation speaks at apply."""

    def upgrade(self, ctx: Context, version: int, old: dict[str, Any]) -> dict[str, Any]:
        return old

    def plan(
        self, ctx: Context, current: dict[str, Any] | None, planned: dict[str, Any]
    ) -> dict[str, Any]:
        return planned
