"""The provider itself: configuration (`endpoint`, `token`, `ca_file`) and the type registry.

Why this module exists: `tf` asks one object for the provider's schema, its
configuration and its resource and data-source types. Configuration falls back
to the environment (`MESHFED_ENDPOINT`, `MESHFED_TOKEN`, `MESHFED_CA_FILE`) so
that CI can keep the token out of HCL, then to `meshfed serve`'s default address.
"""

from __future__ import annotations

import os
from typing import Any

from tf import types as t
from tf.schema import Attribute, Schema

from terraform.provider.client import Client
from terraform.provider.cluster import ClusterResource
from terraform.provider.common import Diagnostics, is_unknown
from terraform.provider.datasources import ClusterData, ServicesData, TrustBundleData
from terraform.provider.export import ServiceExportResource
from terraform.provider.link import LinkResource

# The address Terraform knows the provider by (`source = "meshfed/meshfed"`).
FULL_NAME = "registry.terraform.io/meshfed/meshfed"
DEFAULT_ENDPOINT = "http://127.0.0.1:9470"  # `meshfed serve --api` default (issue 4)
ENV = {"endpoint": "MESHFED_ENDPOINT", "token": "MESHFED_TOKEN", "ca_file": "MESHFED_CA_FILE"}


class MeshfedProvider:
    """The `meshfed` provider (implements `tf.iface.Provider`)."""

    def __init__(self) -> None:
        self.client: Client | None = None

    def get_model_prefix(self) -> str:
        return "meshfed_"

    def full_name(self) -> str:
        return FULL_NAME

    def get_provider_schema(self, diags: Diagnostics) -> Schema:
        return Schema(
            attributes=[
                Attribute(
                    "endpoint",
                    t.String(),
                    description="Registry REST API base URL, e.g. `http://127.0.0.1:9470` "
                    f"(env `MESHFED_ENDPOINT`; default `{DEFAULT_ENDPOINT}`).",
                    optional=True,
                ),
                Attribute(
                    "token",
                    t.String(),
                    description="API bearer token (env `MESHFED_TOKEN`); CA exports need admin.",
                    optional=True,
                    sensitive=True,
                ),
                Attribute(
                    "ca_file",
                    t.String(),
                    description="PEM file of CAs trusted for an https endpoint "
                    "(env `MESHFED_CA_FILE`).",
                    optional=True,
                ),
            ]
        )

    def validate_config(self, diags: Diagnostics, config: dict[str, Any]) -> None:
        endpoint = config.get("endpoint")
        if isinstance(endpoint, str) and not endpoint.startswith(("http://", "https://")):
            diags.add_error(
                "Invalid endpoint",
                f"{endpoint!r} is not an http:// or https:// URL",
                path=["endpoint"],
            )

    def configure_provider(self, diags: Diagnostics, config: dict[str, Any]) -> None:
        values: dict[str, str | None] = {}
        for key, env in ENV.items():
            value = config.get(key)
            if is_unknown(value):
                diags.add_error(
                    f"provider meshfed: {key} is not known until apply",
                    "Configure the provider from values known at plan time.",
                    path=[key],
                )
                return
            values[key] = value if value else (os.environ.get(env) or None)
        ca_file = values["ca_file"]
        if ca_file and not os.path.isfile(ca_file):
            diags.add_error("provider meshfed: ca_file not found", ca_file, path=["ca_file"])
            return
        self.client = Client(
            endpoint=values["endpoint"] or DEFAULT_ENDPOINT,
            token=values["token"],
            ca_file=ca_file,
        )

    def api(self, diags: Diagnostics) -> Client | None:
        """The configured client; an error diagnostic if the provider was never configured."""
        if self.client is None:
            diags.add_error("provider meshfed is not configured", "This is a provider bug.")
        return self.client

    def get_data_sources(self) -> list[type[Any]]:
        return [ClusterData, TrustBundleData, ServicesData]

    def get_resources(self) -> list[type[Any]]:
        return [ClusterResource, LinkResource, ServiceExportResource]

    def new_resource(self, klass: type[Any]) -> Any:
        return klass(self)

    def new_data_source(self, klass: type[Any]) -> Any:
        return klass(self)
