"""`meshfed_link`: two clusters exchanging exports, with the link's status as the registry sees it.

Why this module exists: links are the federation's topology, what the
`federation` module creates in full-mesh or hub-and-spoke shape. The REST API
has no PATCH for links (`POST`, `GET`, `DELETE /api/v1/links/{a}/{b}`), so every
argument forces a replacement. The import ID is the link's name, `a/b`.
`status` is the Ready condition (`True`, `False`, `Unknown`) and `conditions`
maps each condition type to its status; gateways and agents move them, so a
refresh may change them without that being drift in what Terraform manages.
"""

from __future__ import annotations

from typing import Any

from tf import types as t
from tf.schema import Attribute, Schema

from terraform.provider.client import ApiError, path
from terraform.provider.common import (
    ApiValidatedResource,
    Context,
    HasClient,
    known,
    reconcile,
    report,
    same_set,
)
from terraform.provider.tftypes import Map

DEFAULTS: dict[str, Any] = {"bidirectional": True, "mode": "terminating", "namespaces": []}
USER_FIELDS = ("a", "b", "bidirectional", "mode", "namespaces")
ATTRIBUTES = (*USER_FIELDS, "status", "conditions", "credential_expiry")


def link_id(a: str, b: str) -> str:
    return f"{a}/{b}"


def computed_fields(found: dict[str, Any]) -> dict[str, Any]:
    conditions = {c["type"]: c["status"] for c in found.get("conditions", [])}
    return {
        "status": conditions.get("Ready", "Unknown"),
        "conditions": conditions,
        "credential_expiry": found.get("credential_expiry"),
    }


class LinkResource(ApiValidatedResource):
    """The `meshfed_link` resource (implements `tf.iface.Resource`)."""

    def __init__(self, provider: HasClient) -> None:
        self.provider = provider

    @classmethod
    def get_name(cls) -> str:
        return "link"

    @classmethod
    def get_schema(cls) -> Schema:
        return Schema(
            attributes=[
                Attribute(
                    "a",
                    t.String(),
                    description="One cluster's name.",
                    required=True,
                    requires_replace=True,
                ),
                Attribute(
                    "b",
                    t.String(),
                    description="The other cluster's name.",
                    required=True,
                    requires_replace=True,
                ),
                Attribute(
                    "bidirectional",
                    t.Bool(),
                    description="Both directions (default true); false: `a` imports what `b` "
                    "exports only.",
                    optional=True,
                    requires_replace=True,
                ),
                Attribute(
                    "mode",
                    t.String(),
                    description="`terminating` (default: bridges meshes with different roots) "
                    "or `passthrough` (end-to-end mTLS on a shared root).",
                    optional=True,
                    requires_replace=True,
                ),
                Attribute(
                    "namespaces",
                    t.Set(t.String()),
                    description="Namespaces exchanged; unset or empty: every namespace.",
                    optional=True,
                    requires_replace=True,
                ),
                Attribute(
                    "status",
                    t.String(),
                    description="The Ready condition's status: `True`, `False` or `Unknown`.",
                    computed=True,
                ),
                Attribute(
                    "conditions",
                    Map(t.String()),
                    description="Condition type (Ready, GatewayReachable, CredentialsValid, "
                    "Synced) to status.",
                    computed=True,
                ),
                Attribute(
                    "credential_expiry",
                    t.String(),
                    description="Expiry of the credential the link holds, if any (RFC 3339).",
                    computed=True,
                ),
            ]
        )

    def create(self, ctx: Context, planned: dict[str, Any]) -> dict[str, Any] | None:
        client = self.provider.api(ctx.diagnostics)
        if client is None:
            return None
        body = {k: planned[k] for k in USER_FIELDS if known(planned.get(k))}
        name = link_id(planned["a"], planned["b"])
        try:
            created = client.request("POST", path("links"), body)
        except ApiError as exc:
            report(ctx.diagnostics, exc, f"create link {name!r}", ATTRIBUTES)
            return None
        return {**planned, **computed_fields(created)}

    def read(self, ctx: Context, current: dict[str, Any]) -> dict[str, Any] | None:
        client = self.provider.api(ctx.diagnostics)
        if client is None:
            return current
        name = link_id(current["a"], current["b"])
        try:
            found = client.get_or_none(path("links", current["a"], current["b"]))
        except ApiError as exc:
            report(ctx.diagnostics, exc, f"read link {name!r}", ATTRIBUTES)
            return current
        if found is None:
            return None  # deleted outside Terraform: plan re-creates it
        return self._state(found, current)

    def update(
        self, ctx: Context, current: dict[str, Any], planned: dict[str, Any]
    ) -> dict[str, Any] | None:
        """Unreachable in practice (every argument replaces); keeps the computed values."""
        return {**planned, **{k: current.get(k) for k in ("status", "conditions")}}

    def delete(self, ctx: Context, current: dict[str, Any]) -> None:
        client = self.provider.api(ctx.diagnostics)
        if client is None:
            return
        try:
            client.request("DELETE", path("links", current["a"], current["b"]))
        except ApiError as exc:
            if not exc.not_found:
                name = link_id(current["a"], current["b"])
                report(ctx.diagnostics, exc, f"delete link {name!r}", ATTRIBUTES)

    def import_(self, ctx: Context, id: str) -> dict[str, Any] | None:
        """`terraform import meshfed_link.x a/b`."""
        client = self.provider.api(ctx.diagnostics)
        if client is None:
            return None
        a, sep, b = id.partition("/")
        if not sep or not a or not b or "/" in b:
            ctx.diagnostics.add_error(
                "Invalid import ID", f"{id!r}: a link is imported as `<cluster-a>/<cluster-b>`"
            )
            return None
        try:
            found = client.request("GET", path("links", a, b))
        except ApiError as exc:
            report(ctx.diagnostics, exc, f"import link {id!r}", ATTRIBUTES)
            return None
        return self._state(found, {"a": a, "b": b})

    def _state(self, found: dict[str, Any], prior: dict[str, Any]) -> dict[str, Any]:
        state = reconcile(found, prior, USER_FIELDS, DEFAULTS, {"namespaces": same_set})
        if known(prior.get("a")) and {prior["a"], prior["b"]} == {found["a"], found["b"]}:
            state["a"], state["b"] = prior["a"], prior["b"]  # the API finds a link either way
        state.update(computed_fields(found))
        return state
