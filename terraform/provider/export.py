"""`meshfed_service_export`: a service a static cluster or a set of VMs offers the clusterset.

Why this module exists: clusters without an agent (VMs, bare metal) have nobody to
report their exports over gRPC, so platform teams declare them in Terraform. The
resource drives `PUT/GET/DELETE /api/v1/clusters/{cluster}/exports/{namespace}/{name}`:
PUT replaces the whole state (ports, scope, every endpoint), so any change is an
in-place update; cluster, namespace and name are the identity (a change replaces).
Import ID: `cluster/namespace/name`. An export the cluster's agent holds is refused
by the registry (409 `HeldByAgent`), and that message is the diagnostic.

`ports` and `endpoints` are nested attributes (plugin protocol 6), so unset inner
values stay null in state; a read keeps the configuration's spelling whenever the
registry's value means the same thing (a default, a canonical address, the
endpoint listening on the service's own ports).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

from tf import types as t
from tf.gen import tfplugin_pb2 as pb
from tf.schema import Attribute, Schema

from terraform.provider.client import ApiError, Client, path
from terraform.provider.common import (
    ApiValidatedResource,
    Context,
    HasClient,
    known,
    report,
    same_set,
)
from terraform.provider.tftypes import Map, TfType

IDENTITY = ("cluster", "namespace", "name")
ATTRIBUTES = (*IDENTITY, "ports", "scope", "endpoints", "created")
PORT_DEFAULTS: dict[str, Any] = {"protocol": "TCP", "name": "", "app_protocol": ""}


class NestedList:
    """The value type of a list nested attribute: a list of objects, null where unset."""

    def __init__(self, attributes: Sequence[Attribute]) -> None:
        self.attributes = list(attributes)

    def _each(self, value: Any, how: str) -> Any:
        if not known(value):
            return value
        return [
            {a.name: getattr(a.type, how)(item.get(a.name)) for a in self.attributes}
            for item in value
        ]

    def encode(self, value: Any) -> Any:
        return self._each(value, "encode")

    def decode(self, value: Any) -> Any:
        return self._each(value, "decode")

    def semantically_equal(self, a: Any, b: Any) -> bool:
        return bool(a == b)

    def tf_type(self) -> bytes:  # unused: nested attributes have no `type`
        return b'["list","dynamic"]'


class StringSet(t.Set):  # type: ignore[misc]  # tf is untyped
    """`set(string)` whose comparison survives null (tf 1.0.1's `Set` iterates it)."""

    def __init__(self) -> None:
        super().__init__(t.String())

    def semantically_equal(self, a: Any, b: Any) -> bool:
        if not known(a) or not known(b):
            return a is b
        return same_set(a, b)


class NestedListAttribute(Attribute):  # type: ignore[misc]  # tf is untyped
    """An attribute whose value is a list of objects with their own attribute schemas."""

    def __init__(self, name: str, attributes: Sequence[Attribute], **kw: Any) -> None:
        super().__init__(name, NestedList(attributes), **kw)
        self.inner = list(attributes)

    def to_pb(self) -> pb.Schema.Attribute:
        base = super().to_pb()
        base.ClearField("type")
        base.nested_type.CopyFrom(
            pb.Schema.Object(
                attributes=[a.to_pb() for a in self.inner],
                nesting=pb.Schema.Object.NestingMode.LIST,
            )
        )
        return base


def _attr(name: str, kind: TfType, description: str, required: bool = False) -> Attribute:
    return Attribute(name, kind, description=description, required=required, optional=not required)


PORT_ATTRIBUTES = [
    _attr("port", t.Number(), "Service port number.", required=True),
    _attr("protocol", t.String(), "`TCP` (default), `UDP` or `SCTP`."),
    _attr("name", t.String(), "Port name; needed when the service has several ports."),
    _attr("app_protocol", t.String(), "Application protocol, e.g. `http`, `grpc`."),
]
ENDPOINT_ATTRIBUTES = [
    _attr("address", t.String(), "IPv4/IPv6 address or DNS name.", required=True),
    _attr("port", t.Number(), "Target port for the service's only port."),
    _attr("ports", Map(t.Number()), "Target ports by service port name."),
    _attr("zone", t.String(), "Zone; default: the cluster's zone."),
    _attr("ready", t.Bool(), "Ready to serve (default true)."),
    _attr("weight", t.Number(), "Load-balancing weight (default 1)."),
]


def canonical_address(text: str) -> str:
    import ipaddress  # lazy, as in common.canonical_host_port

    with contextlib.suppress(ValueError):
        return str(ipaddress.ip_address(text))
    return text.lower()


def export_id(state: dict[str, Any]) -> str:
    return "/".join(str(state.get(k)) for k in IDENTITY)


def request_body(planned: dict[str, Any]) -> dict[str, Any]:
    """The PUT body for a planned state: only what the configuration sets."""
    ports = [{k: v for k, v in p.items() if known(v)} for p in (planned.get("ports") or [])]
    endpoints = []
    for ep in planned.get("endpoints") or []:
        body = {
            k: ep[k] for k in ("address", "port", "zone", "ready", "weight") if known(ep.get(k))
        }
        if known(ep.get("ports")):
            body["ports"] = [{"name": n, "port": p} for n, p in sorted(ep["ports"].items())]
        endpoints.append(body)
    scope: Any = planned.get("scope")
    return {"ports": ports, "scope": list(scope) if known(scope) else [], "endpoints": endpoints}


def _port_matches(held: dict[str, Any], port: dict[str, Any]) -> bool:
    return held.get("port") == port["port"] and all(
        (held.get(k) if known(held.get(k)) else d) == port.get(k, d)
        for k, d in PORT_DEFAULTS.items()
    )


def _endpoint_ports(ep: dict[str, Any]) -> dict[str, int]:
    return {p.get("name", ""): p["port"] for p in ep["ports"]}


def _endpoint_matches(
    held: dict[str, Any], ep: dict[str, Any], service_ports: list[dict[str, Any]]
) -> bool:
    if canonical_address(str(held.get("address"))) != ep["address"]:
        return False
    if known(held.get("zone")) and held["zone"] != ep["zone"]:
        return False
    if (held["ready"] if known(held.get("ready")) else True) != ep["ready"]:
        return False
    if (held["weight"] if known(held.get("weight")) else 1) != ep["weight"]:
        return False
    if known(held.get("port")):
        return len(ep["ports"]) == 1 and ep["ports"][0]["port"] == held["port"]
    if known(held.get("ports")):
        got = _endpoint_ports(ep)
        wanted = dict(held["ports"])
        if list(wanted) == [""] and len(got) == 1:
            return list(got.values()) == list(wanted.values())
        return got == wanted
    return _endpoint_ports(ep) == {p.get("name", ""): p["port"] for p in service_ports}


class ServiceExportResource(ApiValidatedResource):
    """The `meshfed_service_export` resource (implements `tf.iface.Resource`)."""

    def __init__(self, provider: HasClient) -> None:
        self.provider = provider

    @classmethod
    def get_name(cls) -> str:
        return "service_export"

    @classmethod
    def get_schema(cls) -> Schema:
        def identity(name: str, what: str) -> Attribute:
            return Attribute(
                name, t.String(), description=what, required=True, requires_replace=True
            )

        return Schema(
            attributes=[
                identity("cluster", "The exporting cluster (a static cluster or VM group)."),
                identity("namespace", "The service's namespace."),
                identity("name", "The service's name (RFC 1035 label)."),
                NestedListAttribute(
                    "ports",
                    PORT_ATTRIBUTES,
                    description="The service's ports (at least one).",
                    required=True,
                ),
                Attribute(
                    "scope",
                    StringSet(),
                    description="Clusters that may import it; unset or empty: every cluster.",
                    optional=True,
                ),
                NestedListAttribute(
                    "endpoints",
                    ENDPOINT_ATTRIBUTES,
                    description="Every endpoint (the registry's set is replaced by this one). "
                    "Each gives `port` (one-port service), `ports` by name, or neither "
                    "(listens on the service's own ports).",
                    optional=True,
                ),
                Attribute(
                    "created",
                    t.String(),
                    description="When the export was first created (the oldest export "
                    "wins a port conflict).",
                    computed=True,
                ),
            ]
        )

    # -- CRUD ---------------------------------------------------------------------------

    def create(self, ctx: Context, planned: dict[str, Any]) -> dict[str, Any] | None:
        client = self.provider.api(ctx.diagnostics)
        if client is None:
            return None
        where = self._path(planned)
        name = export_id(planned)
        try:
            held = client.get_or_none(where)
            # An agent's export is refused by the PUT itself, in the registry's words.
            if held is not None and held.get("managed_by") != "agent":
                ctx.diagnostics.add_error(
                    f"service export {name!r} already exists",
                    f"Import it instead: terraform import <address> {name}",
                )
                return None
            found = client.request("PUT", where, request_body(planned))
        except ApiError as exc:
            report(ctx.diagnostics, exc, f"create service export {name!r}", ATTRIBUTES)
            return None
        return {**planned, "created": found["created"]}

    def read(self, ctx: Context, current: dict[str, Any]) -> dict[str, Any] | None:
        client = self.provider.api(ctx.diagnostics)
        if client is None:
            return current
        name = export_id(current)
        try:
            found = client.get_or_none(self._path(current))
            if found is None:
                return None  # deleted outside Terraform: plan re-creates it
            return self._state(client, found, current)
        except ApiError as exc:
            report(ctx.diagnostics, exc, f"read service export {name!r}", ATTRIBUTES)
            return current

    def update(
        self, ctx: Context, current: dict[str, Any], planned: dict[str, Any]
    ) -> dict[str, Any] | None:
        client = self.provider.api(ctx.diagnostics)
        if client is None:
            return current
        name = export_id(current)
        try:
            found = client.request("PUT", self._path(current), request_body(planned))
        except ApiError as exc:
            report(ctx.diagnostics, exc, f"update service export {name!r}", ATTRIBUTES)
            return current
        return {**planned, "created": found["created"]}

    def delete(self, ctx: Context, current: dict[str, Any]) -> None:
        client = self.provider.api(ctx.diagnostics)
        if client is None:
            return
        try:
            client.request("DELETE", self._path(current))
        except ApiError as exc:
            if not exc.not_found:
                name = export_id(current)
                report(ctx.diagnostics, exc, f"delete service export {name!r}", ATTRIBUTES)

    def import_(self, ctx: Context, id: str) -> dict[str, Any] | None:
        """`terraform import meshfed_service_export.x <cluster>/<namespace>/<name>`."""
        client = self.provider.api(ctx.diagnostics)
        if client is None:
            return None
        parts = id.split("/")
        if len(parts) != 3 or not all(parts):
            ctx.diagnostics.add_error(
                "Invalid import ID",
                f"{id!r}: a service export is imported as `<cluster>/<namespace>/<name>`",
            )
            return None
        prior = dict(zip(IDENTITY, parts, strict=True))
        try:
            found = client.request("GET", self._path(prior))
            return self._state(client, found, prior)
        except ApiError as exc:
            report(ctx.diagnostics, exc, f"import service export {id!r}", ATTRIBUTES)
            return None

    # -- helpers ------------------------------------------------------------------------

    @staticmethod
    def _path(state: dict[str, Any]) -> str:
        return path("clusters", state["cluster"], "exports", state["namespace"], state["name"])

    def _state(
        self, client: Client, found: dict[str, Any], prior: dict[str, Any]
    ) -> dict[str, Any]:
        """State from the registry's answer, keeping `prior`'s spelling where it means the same."""
        state: dict[str, Any] = {k: prior[k] for k in IDENTITY}
        ports = found["ports"]
        held_ports: Any = prior.get("ports")
        if (
            known(held_ports)
            and len(held_ports) == len(ports)
            and all(_port_matches(h, p) for h, p in zip(held_ports, ports, strict=True))
        ):
            state["ports"] = held_ports
        else:
            state["ports"] = [
                {"port": p["port"], **{k: (p.get(k) if p.get(k) != d else None)
                                      for k, d in PORT_DEFAULTS.items()}}
                for p in ports
            ]  # fmt: skip
        scope = prior.get("scope")
        if known(scope) and same_set(scope, found["scope"]):
            state["scope"] = scope
        else:
            state["scope"] = found["scope"] or (None if not known(scope) else [])
        state["endpoints"] = self._endpoints(client, found, prior.get("endpoints"))
        state["created"] = found["created"]
        return state

    def _endpoints(
        self, client: Client, found: dict[str, Any], held: Any
    ) -> list[dict[str, Any]] | None:
        server = found["endpoints"]
        if known(held):
            by_address = {ep["address"]: ep for ep in server}
            matched = [by_address.get(canonical_address(str(h.get("address")))) for h in held]
            if len(held) == len(server) and all(
                m is not None and _endpoint_matches(h, m, found["ports"])
                for h, m in zip(held, matched, strict=True)
            ):
                return list(held)
        if not server:
            return None if not known(held) else []
        zone = client.request("GET", path("clusters", found["cluster"]))["zone"]
        own = {p.get("name", ""): p["port"] for p in found["ports"]}
        out = []
        for ep in server:
            ports = _endpoint_ports(ep)
            # The spelling an import (or drift) reads back: `port` for a one-port service
            # whose port has no name, `ports` by name otherwise, neither for an endpoint
            # on the service's own ports.
            single = len(found["ports"]) == 1 and list(ports) == [""]
            out.append(
                {
                    "address": ep["address"],
                    "port": next(iter(ports.values())) if single and ports != own else None,
                    "ports": ports if not single and ports != own else None,
                    "zone": None if ep["zone"] == zone else ep["zone"],
                    "ready": None if ep["ready"] else False,
                    "weight": None if ep["weight"] == 1 else ep["weight"],
                }
            )
        return out
