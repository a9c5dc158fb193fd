"""The provider's resources and data sources through a real `terraform` and `meshfed serve`.

Covers issue 8's promises: plan, apply, plan with no changes, in-place update,
import, drift (deleted outside Terraform -> re-created), replacement on rename,
destroy, and the registry's validation message as a Terraform diagnostic.
"""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from pathlib import Path

from tests.terraform.conftest import Registry, Terraform, with_registry_env, write_config

CLUSTERS = """\
resource "meshfed_cluster" "east" {{
  name              = "tf-east"
  region            = "{east_region}"
  zone              = "us-east-1a"
  gateway_addresses = {east_gateways}
  labels            = {east_labels}
}}

resource "meshfed_cluster" "west" {{
  name         = "{west_name}"
  region       = "eu-west-1"
  zone         = "eu-west-1b"
  trust_domain = "west.example.org"
  network      = "west-net"
}}

resource "meshfed_link" "ew" {{
  a          = meshfed_cluster.east.name
  b          = meshfed_cluster.west.name
  mode       = "passthrough"
  namespaces = ["shop", "billing"]
}}

output "east" {{
  value     = meshfed_cluster.east
  sensitive = true
}}

output "link_status" {{
  value = meshfed_link.ew.status
}}
"""


def clusters_tf(
    east_region: str = "us-east-1",
    east_gateways: str = '["gw.east.example:15443"]',
    east_labels: str = '{ cloud = "aws" }',
    west_name: str = "tf-west",
) -> str:
    return CLUSTERS.format(
        east_region=east_region,
        east_gateways=east_gateways,
        east_labels=east_labels,
        west_name=west_name,
    )


def test_cluster_and_link_lifecycle(tf: Terraform, registry: Registry, tmp_path: Path) -> None:
    work = tmp_path / "lifecycle"
    write_config(work, registry, clusters_tf())

    # plan, apply
    code, out = tf.plan(work)
    assert code == 2 and "3 to add" in out, out
    tf.apply(work)
    status, east = registry.call("GET", "/api/v1/clusters/tf-east")
    assert status == 200
    assert east["trust_domain"] == "tf-east.meshfed.local"  # the provider's default
    assert east["labels"] == {"cloud": "aws"}
    assert east["network"] == "default"
    status, link = registry.call("GET", "/api/v1/links/tf-east/tf-west")
    assert status == 200 and link["mode"] == "passthrough"
    assert link["namespaces"] == ["billing", "shop"]

    # computed and sensitive attributes: join token, CA material, link status
    outputs = tf.outputs(work)
    state = outputs["east"]
    assert re.fullmatch(r"[0-9a-f]+\.[A-Za-z0-9_-]+", state["join_token"])
    assert datetime.fromisoformat(state["join_token_expires"]) > datetime.now(UTC)
    assert set(state["istio"]) == {"ca-cert.pem", "ca-key.pem", "root-cert.pem", "cert-chain.pem"}
    assert set(state["linkerd"]) == {"ca.crt", "issuer.crt", "issuer.key"}
    assert "PRIVATE KEY" in state["istio"]["ca-key.pem"]
    assert outputs["link_status"] == "Unknown"  # nothing has probed the link yet
    show = tf.run(work, "show", "-no-color").stdout
    assert state["join_token"] not in show and "(sensitive value)" in show

    # after apply, nothing to do
    assert tf.plan(work)[0] == 0

    # in-place update (PATCH): region, gateway addresses, labels
    write_config(
        work,
        registry,
        clusters_tf(
            east_region="us-east-2",
            east_gateways='["gw.east.example:15443", "10.0.0.1:15443"]',
            east_labels='{ cloud = "aws", tier = "prod" }',
        ),
    )
    code, out = tf.plan(work)
    assert code == 2 and "1 to change, 0 to destroy" in out, out
    assert "meshfed_cluster.east will be updated in-place" in out
    tf.apply(work)
    east = registry.call("GET", "/api/v1/clusters/tf-east")[1]
    assert east["region"] == "us-east-2"
    assert east["labels"] == {"cloud": "aws", "tier": "prod"}
    assert east["gateway_addresses"] == ["gw.east.example:15443", "10.0.0.1:15443"]
    assert tf.outputs(work)["east"]["join_token"] == state["join_token"]  # kept, not re-issued
    assert tf.plan(work)[0] == 0

    # drift: deleted outside Terraform (the link goes with the cluster) -> re-created
    assert registry.call("DELETE", "/api/v1/clusters/tf-west")[0] == 204
    code, out = tf.plan(work)
    assert code == 2, out
    assert "meshfed_cluster.west will be created" in out
    assert "meshfed_link.ew will be created" in out
    tf.apply(work)
    assert registry.call("GET", "/api/v1/links/tf-east/tf-west")[0] == 200
    assert tf.plan(work)[0] == 0

    # rename: the API cannot change a name, so the cluster (and its link) are replaced
    write_config(work, registry, clusters_tf(west_name="tf-west2"))
    code, out = tf.plan(work)
    assert code == 2 and "# forces replacement" in out, out
    assert "meshfed_cluster.west must be replaced" in out
    tf.apply(work)
    assert registry.call("GET", "/api/v1/clusters/tf-west")[0] == 404
    assert registry.call("GET", "/api/v1/clusters/tf-west2")[1]["network"] == "west-net"
    assert tf.plan(work)[0] == 0

    # import by name: forget the objects, import them, and the plan is clean again
    tf.run(work, "state", "rm", "meshfed_cluster.east", "meshfed_link.ew")
    tf.run(work, "import", "-input=false", "-no-color", "meshfed_cluster.east", "tf-east")
    tf.run(work, "import", "-input=false", "-no-color", "meshfed_link.ew", "tf-east/tf-west2")
    assert tf.plan(work)[0] == 0

    # destroy
    tf.destroy(work)
    for name in ("tf-east", "tf-west2"):
        assert registry.call("GET", f"/api/v1/clusters/{name}")[0] == 404
    assert registry.call("GET", "/api/v1/links/tf-east/tf-west2")[0] == 404


def test_import_block_and_env_configuration(
    tf: Terraform, registry: Registry, tmp_path: Path
) -> None:
    """`import {}` blocks adopt existing objects; the provider reads MESHFED_* from the env."""
    body = {
        "name": "adopt-me",
        "region": "ap-south-1",
        "zone": "ap-south-1a",
        "trust_domain": "adopt.example",
        "labels": {"team": "edge"},
    }
    assert registry.call("POST", "/api/v1/clusters", body)[0] == 201
    work = tmp_path / "adopt"
    write_config(
        work,
        None,
        """\
        import {
          to = meshfed_cluster.adopted
          id = "adopt-me"
        }

        resource "meshfed_cluster" "adopted" {
          name         = "adopt-me"
          region       = "ap-south-1"
          zone         = "ap-south-1a"
          trust_domain = "adopt.example"
          labels       = { team = "edge" }
        }
        """,
    )
    env_tf = with_registry_env(tf, registry)
    code, out = env_tf.plan(work)
    assert code == 2 and "1 to import, 0 to add, 0 to change, 0 to destroy" in out, out
    env_tf.apply(work)
    assert env_tf.plan(work)[0] == 0
    env_tf.destroy(work)
    assert registry.call("GET", "/api/v1/clusters/adopt-me")[0] == 404


def test_bad_cluster_name_fails_with_the_api_message(
    tf: Terraform, registry: Registry, tmp_path: Path
) -> None:
    work = tmp_path / "bad"
    write_config(
        work,
        registry,
        """\
        resource "meshfed_cluster" "bad" {
          name   = "Not_A_Label"
          region = "us-east-1"
          zone   = "us-east-1a"
        }
        """,
    )
    proc = tf.run(work, "apply", "-auto-approve", "-input=false", "-no-color", ok=(1,))
    out = " ".join((proc.stdout + proc.stderr).split())  # terraform wraps long lines
    assert "meshfed API: Invalid request (422 Invalid): cannot create cluster 'Not_A_Label'" in out
    assert "name: 'Not_A_Label' is not an RFC 1123 label" in out
    assert "on main.tf line" in out and 'name = "Not_A_Label"' in out  # points at the attribute


def seed_export(store_url: str, cluster: str, namespace: str, name: str, port: int) -> None:
    """Write a service export into the registry's store, as an agent's report would.

    The record the control plane writes for an agent's report (static exports through
    the REST API are tests/terraform/test_terraform_export.py's).
    """
    from federation.model import ServiceExport
    from federation.model.base import Port
    from federation.store import open_store

    async def put() -> None:
        store = await open_store(store_url)
        try:
            await store.exports.put(
                ServiceExport(cluster, namespace, name, datetime.now(UTC), (Port(port),))
            )
        finally:
            await store.close()

    asyncio.run(put())


def test_data_sources(tf: Terraform, registry: Registry, tmp_path: Path) -> None:
    body = {
        "name": "ds-one",
        "region": "us-west-2",
        "zone": "us-west-2c",
        "trust_domain": "ds-one.example",
        "gateway_addresses": ["192.0.2.7:15443"],
    }
    assert registry.call("POST", "/api/v1/clusters", body)[0] == 201
    seed_export(registry.store_url, "ds-one", "shop", "cart", 8080)
    seed_export(registry.store_url, "ds-one", "billing", "invoice", 9090)
    work = tmp_path / "data"
    write_config(
        work,
        registry,
        """\
        data "meshfed_cluster" "one" {
          name = "ds-one"
        }

        data "meshfed_trust_bundle" "one" {
          trust_domain = data.meshfed_cluster.one.trust_domain
        }

        data "meshfed_services" "all" {}

        data "meshfed_services" "shop" {
          namespace = "shop"
        }

        output "cluster" { value = data.meshfed_cluster.one }
        output "bundle" { value = data.meshfed_trust_bundle.one }
        output "all" { value = data.meshfed_services.all.names }
        output "shop" { value = data.meshfed_services.shop.services }
        """,
    )
    tf.apply(work)
    out = tf.outputs(work)
    assert out["cluster"]["region"] == "us-west-2"
    assert out["cluster"]["gateway_addresses"] == ["192.0.2.7:15443"]
    assert out["cluster"]["network"] == "default"
    bundle = out["bundle"]
    assert bundle["roots_pem"].startswith("-----BEGIN CERTIFICATE-----\n")
    assert bundle["sequence"] >= 1
    assert '"keys"' in bundle["bundle_json"]
    assert out["all"] == ["billing/invoice", "shop/cart"]
    assert out["shop"] == [
        {
            "namespace": "shop",
            "name": "cart",
            "clusters": ["ds-one"],
            "ports": [{"port": 8080, "protocol": "TCP", "name": "", "app_protocol": ""}],
            "conflicts": [],
        }
    ]
    assert tf.plan(work)[0] == 0
