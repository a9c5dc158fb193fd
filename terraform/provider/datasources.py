"""Data sources: `meshfed_cluster`, `meshfed_trust_bundle`, `meshfed_services`.

Why this module exists: configurations outside the one that manages the
federation need to read it: a cluster's locality and trust domain, a trust
domain's SPIFFE bundle (for a mesh's extra trust anchors or a VM's CA file),
and which services the clusterset offers. All are read-only GETs.
"""

from __future__ import annotations

import json
import textwrap
from typing import Any

from tf import types as t
from tf.schema import Attribute, Schema

from terraform.provider.client import ApiError, path
from terraform.provider.common import Context, HasClient, known, report
from terraform.provider.tftypes import Map, Object


class _DataSource:
    """What every data source shares (implements `tf.iface.DataSource` with `read`)."""

    NAME = ""

    def __init__(self, provider: HasClient) -> None:
        self.provider = provider

    @classmethod
    def get_name(cls) -> str:
        return cls.NAME

    def validate(self, diags: Any, type_name: str, config: dict[str, Any]) -> None:
        """Nothing beyond the schema."""


class ClusterData(_DataSource):
    """`data "meshfed_cluster"`: one cluster by name."""

    NAME = "cluster"
    FIELDS = ("region", "zone", "trust_domain", "network", "source")

    @classmethod
    def get_schema(cls) -> Schema:
        return Schema(
            attributes=[
                Attribute("name", t.String(), description="The cluster's name.", required=True),
                *(Attribute(f, t.String(), computed=True) for f in cls.FIELDS),
                Attribute("gateway_addresses", t.List(t.String()), computed=True),
                Attribute("labels", Map(t.String()), computed=True),
            ]
        )

    def read(self, ctx: Context, config: dict[str, Any]) -> dict[str, Any] | None:
        client = self.provider.api(ctx.diagnostics)
        if client is None:
            return None
        name = config["name"]
        try:
            found = client.request("GET", path("clusters", name))
        except ApiError as exc:
            report(ctx.diagnostics, exc, f"read cluster {name!r}", ("name",))
            return None
        out = {f: found[f] for f in self.FIELDS}
        return {
            "name": name,
            **out,
            "gateway_addresses": found["gateway_addresses"],
            "labels": found["labels"],
        }


def pem_certificates(bundle: dict[str, Any]) -> str:
    """The X.509 authorities of a SPIFFE bundle (JWKS `x5c`, base64 DER) as PEM text."""
    out = []
    for key in bundle.get("keys", []):
        if key.get("use") != "x509-svid":
            continue
        for der_b64 in key.get("x5c", [])[:1]:  # SPIFFE: x5c holds exactly the authority
            body = "\n".join(textwrap.wrap(der_b64, 64))
            out.append(f"-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----\n")
    return "".join(out)


class TrustBundleData(_DataSource):
    """`data "meshfed_trust_bundle"`: one trust domain's SPIFFE bundle (public, no token)."""

    NAME = "trust_bundle"

    @classmethod
    def get_schema(cls) -> Schema:
        return Schema(
            attributes=[
                Attribute("trust_domain", t.String(), required=True),
                Attribute(
                    "bundle_json",
                    t.String(),
                    computed=True,
                    description="The SPIFFE bundle document (JWKS).",
                ),
                Attribute(
                    "roots_pem",
                    t.String(),
                    computed=True,
                    description="The bundle's X.509 authorities as PEM.",
                ),
                Attribute("sequence", t.Number(), computed=True, description="`spiffe_sequence`."),
                Attribute(
                    "refresh_hint",
                    t.Number(),
                    computed=True,
                    description="`spiffe_refresh_hint` in seconds, if any.",
                ),
            ]
        )

    def read(self, ctx: Context, config: dict[str, Any]) -> dict[str, Any] | None:
        client = self.provider.api(ctx.diagnostics)
        if client is None:
            return None
        td = config["trust_domain"]
        try:
            bundle = client.request("GET", path("trust", "bundles", td))
        except ApiError as exc:
            report(ctx.diagnostics, exc, f"read the bundle of {td!r}", ("trust_domain",))
            return None
        return {
            "trust_domain": td,
            "bundle_json": json.dumps(bundle, sort_keys=True),
            "roots_pem": pem_certificates(bundle),
            "sequence": bundle.get("spiffe_sequence"),
            "refresh_hint": bundle.get("spiffe_refresh_hint"),
        }


PORT = Object(
    {"port": t.Number(), "protocol": t.String(), "name": t.String(), "app_protocol": t.String()}
)
SERVICE = Object(
    {
        "namespace": t.String(),
        "name": t.String(),
        "clusters": t.List(t.String()),
        "ports": t.List(PORT),
        "conflicts": t.List(t.String()),
    }
)


class ServicesData(_DataSource):
    """`data "meshfed_services"`: the clusterset's services, optionally filtered."""

    NAME = "services"

    @classmethod
    def get_schema(cls) -> Schema:
        return Schema(
            attributes=[
                Attribute(
                    "cluster",
                    t.String(),
                    optional=True,
                    description="Only services this cluster exports.",
                ),
                Attribute(
                    "namespace",
                    t.String(),
                    optional=True,
                    description="Only services in this namespace.",
                ),
                Attribute(
                    "services",
                    t.List(SERVICE),
                    computed=True,
                    description="Exported services with their clusters and merged ports.",
                ),
                Attribute(
                    "names",
                    t.List(t.String()),
                    computed=True,
                    description="`<namespace>/<name>` of each service.",
                ),
            ]
        )

    def read(self, ctx: Context, config: dict[str, Any]) -> dict[str, Any] | None:
        client = self.provider.api(ctx.diagnostics)
        if client is None:
            return None
        query = {k: config[k] for k in ("cluster", "namespace") if known(config.get(k))}
        try:
            items = client.list_all(path("services"), query)
        except ApiError as exc:
            report(ctx.diagnostics, exc, "list services", ("cluster", "namespace"))
            return None
        services = [SERVICE.encode(s) for s in items]
        return {
            "cluster": config.get("cluster"),
            "namespace": config.get("namespace"),
            "services": services,
            "names": [f"{s['namespace']}/{s['name']}" for s in services],
        }
