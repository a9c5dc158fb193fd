"""`meshfed_cluster`: a member cluster, its join token and its CA material for mesh installs.

Why this module exists: a cluster is what a platform team provisions first, and
what Terraform outputs from it (a bootstrap token for the agent and gateway, the
intermediate CA as Istio `cacerts` files or a Linkerd trust anchor + issuer) is
what the next step (a Helm release, a Kubernetes Secret) consumes.

Lifecycle, matching the REST API: `POST /clusters` creates (and issues the CA),
`PATCH /clusters/{name}` changes region, zone, network, gateway addresses, source
and labels in place; name and trust domain are baked into the CA and every SVID,
so changing either replaces the cluster. The join token is shown once by the
registry, so it is kept from creation, never re-read; the CA files (admin only)
are re-read on refresh so a root rotation shows up.
"""

from __future__ import annotations

from typing import Any

from tf import types as t
from tf.schema import Attribute, Schema

from terraform.provider.client import ApiError, Client, path
from terraform.provider.common import (
    ApiValidatedResource,
    Context,
    HasClient,
    fill_unknowns,
    known,
    reconcile,
    report,
    same_host_ports,
)
from terraform.provider.tftypes import Map

# A cluster with no trust domain given gets its own under the federation's default
# root domain (federation.registry.trust.DEFAULT_ROOT_TRUST_DOMAIN), so clusters
# created without one never share a domain by accident.
DEFAULT_TRUST_DOMAIN_SUFFIX = "meshfed.local"
# What the registry fills in when a field is absent (federation.api.schemas.ClusterIn).
DEFAULTS: dict[str, Any] = {
    "network": "default",
    "gateway_addresses": [],
    "labels": {},
    "source": "static",
}
USER_FIELDS = ("name", "region", "zone", "network", "gateway_addresses", "labels", "source")
MUTABLE_FIELDS = ("region", "zone", "network", "gateway_addresses", "labels", "source")
CA_FORMATS = ("istio", "linkerd")
ATTRIBUTES = (*USER_FIELDS, "trust_domain", "join_token", "join_token_expires", "istio", "linkerd")


def default_trust_domain(name: str) -> str:
    return f"{name}.{DEFAULT_TRUST_DOMAIN_SUFFIX}"


class ClusterResource(ApiValidatedResource):
    """The `meshfed_cluster` resource (implements `tf.iface.Resource`)."""

    def __init__(self, provider: HasClient) -> None:
        self.provider = provider

    @classmethod
    def get_name(cls) -> str:
        return "cluster"

    @classmethod
    def get_schema(cls) -> Schema:
        strings = t.List(t.String())
        files = Map(t.String())
        return Schema(
            attributes=[
                Attribute(
                    "name",
                    t.String(),
                    description="RFC 1123 label, unique in the federation; changing it "
                    "replaces the cluster. Import ID.",
                    required=True,
                    requires_replace=True,
                ),
                Attribute("region", t.String(), description="Locality region.", required=True),
                Attribute("zone", t.String(), description="Locality zone.", required=True),
                Attribute(
                    "trust_domain",
                    t.String(),
                    description="SPIFFE trust domain of the cluster's mesh; default "
                    f"`<name>.{DEFAULT_TRUST_DOMAIN_SUFFIX}`. Changing it replaces the cluster.",
                    optional=True,
                    computed=True,
                    requires_replace=True,
                ),
                Attribute(
                    "network",
                    t.String(),
                    description="Network name (default `default`).",
                    optional=True,
                ),
                Attribute(
                    "gateway_addresses",
                    strings,
                    description="East-west gateway `host:port` addresses.",
                    optional=True,
                ),
                Attribute("labels", Map(t.String()), description="Labels.", optional=True),
                Attribute(
                    "source",
                    t.String(),
                    description="Endpoint source: `kubernetes` or `static` (default; VMs).",
                    optional=True,
                ),
                Attribute(
                    "join_token",
                    t.String(),
                    description="Single-use bootstrap token for the cluster's agent and "
                    "gateway, issued at creation (valid 1 h; not set on imported clusters).",
                    computed=True,
                    sensitive=True,
                ),
                Attribute(
                    "join_token_expires",
                    t.String(),
                    description="When `join_token` expires (RFC 3339).",
                    computed=True,
                ),
                Attribute(
                    "istio",
                    files,
                    description="Istio plug-in CA files (`ca-cert.pem`, `ca-key.pem`, "
                    "`root-cert.pem`, `cert-chain.pem`) for the `cacerts` Secret. Needs an "
                    "admin token.",
                    computed=True,
                    sensitive=True,
                ),
                Attribute(
                    "linkerd",
                    files,
                    description="Linkerd identity files (`ca.crt` trust anchors, "
                    "`issuer.crt`, `issuer.key`). Needs an admin token.",
                    computed=True,
                    sensitive=True,
                ),
            ]
        )

    # -- CRUD ---------------------------------------------------------------------------

    def create(self, ctx: Context, planned: dict[str, Any]) -> dict[str, Any] | None:
        client = self.provider.api(ctx.diagnostics)
        if client is None:
            return None
        name = planned["name"]
        td = planned.get("trust_domain")
        body = {k: planned[k] for k in USER_FIELDS if known(planned.get(k))}
        body["trust_domain"] = td if known(td) else default_trust_domain(name)
        try:
            created = client.request("POST", path("clusters"), body)
        except ApiError as exc:
            report(ctx.diagnostics, exc, f"create cluster {name!r}", ATTRIBUTES)
            return None
        computed: dict[str, Any] = {"trust_domain": created["trust_domain"]}
        try:
            token = client.request("POST", path("clusters", name, "join-tokens"), {})
            computed["join_token"] = token["token"]
            computed["join_token_expires"] = token["expires"]
        except ApiError as exc:
            report(ctx.diagnostics, exc, f"issue a join token for cluster {name!r}", ATTRIBUTES)
        computed.update(self._ca_files(ctx, client, name, {}))
        return fill_unknowns(dict(planned), computed)

    def read(self, ctx: Context, current: dict[str, Any]) -> dict[str, Any] | None:
        client = self.provider.api(ctx.diagnostics)
        if client is None:
            return current
        name = current["name"]
        try:
            found = client.get_or_none(path("clusters", name))
        except ApiError as exc:
            report(ctx.diagnostics, exc, f"read cluster {name!r}", ATTRIBUTES)
            return current
        if found is None:
            return None  # deleted outside Terraform: plan re-creates it
        return self._state(ctx, client, found, current)

    def update(
        self, ctx: Context, current: dict[str, Any], planned: dict[str, Any]
    ) -> dict[str, Any] | None:
        client = self.provider.api(ctx.diagnostics)
        if client is None:
            return current
        name = current["name"]
        changes = {
            k: (planned[k] if planned.get(k) is not None else DEFAULTS.get(k))
            for k in MUTABLE_FIELDS
            if planned.get(k) != current.get(k)
        }
        if changes:
            try:
                client.request("PATCH", path("clusters", name), changes)
            except ApiError as exc:
                report(ctx.diagnostics, exc, f"update cluster {name!r}", ATTRIBUTES)
                return current
        return fill_unknowns(dict(planned), current)

    def delete(self, ctx: Context, current: dict[str, Any]) -> None:
        client = self.provider.api(ctx.diagnostics)
        if client is None:
            return
        name = current["name"]
        try:
            client.request("DELETE", path("clusters", name))
        except ApiError as exc:
            if not exc.not_found:
                report(ctx.diagnostics, exc, f"delete cluster {name!r}", ATTRIBUTES)

    def import_(self, ctx: Context, id: str) -> dict[str, Any] | None:
        """`terraform import meshfed_cluster.x <name>`; no join token (shown once, at creation)."""
        client = self.provider.api(ctx.diagnostics)
        if client is None:
            return None
        try:
            found = client.request("GET", path("clusters", id))
        except ApiError as exc:
            report(ctx.diagnostics, exc, f"import cluster {id!r}", ATTRIBUTES)
            return None
        return self._state(ctx, client, found, {})

    # -- helpers ------------------------------------------------------------------------

    def _state(
        self, ctx: Context, client: Client, found: dict[str, Any], prior: dict[str, Any]
    ) -> dict[str, Any]:
        state = reconcile(
            found, prior, USER_FIELDS, DEFAULTS, {"gateway_addresses": same_host_ports}
        )
        state["trust_domain"] = found["trust_domain"]
        state["join_token"] = prior.get("join_token")
        state["join_token_expires"] = prior.get("join_token_expires")
        state.update(self._ca_files(ctx, client, found["name"], prior))
        return state

    def _ca_files(
        self, ctx: Context, client: Client, name: str, prior: dict[str, Any]
    ) -> dict[str, Any]:
        """The CA exports by format; kept from `prior` where the token may not export them."""
        out: dict[str, Any] = {}
        for fmt in CA_FORMATS:
            try:
                doc = client.request("GET", path("clusters", name, "ca"), query={"format": fmt})
                out[fmt] = doc["files"]
            except ApiError as exc:
                out[fmt] = prior.get(fmt)
                if exc.status == 403:
                    if not prior:  # warn once, when the attribute is first left empty
                        ctx.diagnostics.add_warning(
                            f"CA material of cluster {name!r} not exported",
                            f"{exc.detail} (exporting CA files needs an admin token)",
                        )
                    continue
                report(ctx.diagnostics, exc, f"export the {fmt} CA of {name!r}", ATTRIBUTES)
        return out
