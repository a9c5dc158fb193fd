"""`meshfed_service_export` through a real `terraform` and `meshfed serve`.

One lifecycle, to keep the added time small: plan, apply, plan with no changes,
in-place update (PUT), drift (deleted outside Terraform -> re-created), import by
`cluster/namespace/name`, the registry's refusal of an agent-held export as a
diagnostic, destroy.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

from tests.terraform.conftest import Registry, Terraform, write_config

EXPORT = """\
resource "meshfed_service_export" "cart" {{
  cluster   = "tfx-vms"
  namespace = "shop"
  name      = "cart"
  ports     = [{{ port = 8080, name = "http", app_protocol = "http" }}]
  scope     = {scope}
  endpoints = {endpoints}
}}

output "created" {{
  value = meshfed_service_export.cart.created
}}
"""

FIRST = """[
    { address = "10.20.0.2", port = 9000 },
    { address = "VM-1.Example.Internal", zone = "rack-1", weight = 5 },
  ]"""
SECOND = """[
    { address = "10.20.0.2", ports = { http = 9001 } },
    { address = "10.20.0.3", ready = false },
  ]"""


def export_tf(scope: str = '["tfx-east"]', endpoints: str = FIRST) -> str:
    return EXPORT.format(scope=scope, endpoints=endpoints)


def hold_by_agent(store_url: str) -> None:
    """An agent's export of tfx-vms shop/held: records under a (long) lease."""
    from federation.model import Endpoint, Port, ServiceExport
    from federation.store import open_store

    async def put() -> None:
        store = await open_store(store_url)
        try:
            lease = await store.grant_lease(3600)
            now = datetime.now(UTC)
            await store.exports.put(
                ServiceExport("tfx-vms", "shop", "held", now, (Port(80),)), lease=lease
            )
            endpoint = Endpoint("tfx-vms", "shop", "held", "10.20.9.9", (Port(80),), "z")
            await store.replace_endpoints("tfx-vms", "shop", "held", [endpoint], lease=lease)
        finally:
            await store.close()

    asyncio.run(put())


def test_service_export_lifecycle(tf: Terraform, registry: Registry, tmp_path: Path) -> None:
    cluster = {
        "name": "tfx-vms",
        "region": "us-east-1",
        "zone": "us-east-1b",
        "trust_domain": "tfx-vms.example",
    }
    assert registry.call("POST", "/api/v1/clusters", cluster)[0] == 201
    url = "/api/v1/clusters/tfx-vms/exports/shop/cart"
    work = tmp_path / "export"
    write_config(work, registry, export_tf())

    code, out = tf.plan(work)
    assert code == 2 and "1 to add" in out, out
    tf.apply(work)
    status, found = registry.call("GET", url)
    assert status == 200 and found["managed_by"] == "static"
    assert found["scope"] == ["tfx-east"]
    eps = {e["address"]: e for e in found["endpoints"]}
    assert eps["10.20.0.2"]["ports"][0]["port"] == 9000
    assert eps["10.20.0.2"]["zone"] == "us-east-1b"  # the cluster's zone
    vm = eps["vm-1.example.internal"]  # the registry canonicalises the name
    assert (vm["zone"], vm["weight"], vm["ports"][0]["port"]) == ("rack-1", 5, 8080)
    created = tf.outputs(work)["created"]
    assert created == found["created"]
    assert tf.plan(work)[0] == 0  # after apply, nothing to do

    # in-place update (PUT): scope dropped, endpoints replaced
    write_config(work, registry, export_tf(scope="null", endpoints=SECOND))
    code, out = tf.plan(work)
    assert code == 2 and "1 to change, 0 to destroy" in out, out
    assert "meshfed_service_export.cart will be updated in-place" in out
    tf.apply(work)
    found = registry.call("GET", url)[1]
    assert found["scope"] == []
    assert [(e["address"], e["ready"]) for e in found["endpoints"]] == [
        ("10.20.0.2", True),
        ("10.20.0.3", False),
    ]
    assert found["endpoints"][0]["ports"][0]["port"] == 9001
    assert tf.outputs(work)["created"] == created  # the export was replaced, not re-created
    assert tf.plan(work)[0] == 0

    # drift: a change outside Terraform is planned back; a deletion re-creates
    body = {"ports": [{"port": 8080, "name": "http"}], "endpoints": [{"address": "10.20.0.7"}]}
    assert registry.call("PUT", url, body)[0] == 200
    code, out = tf.plan(work)
    assert code == 2 and "meshfed_service_export.cart will be updated in-place" in out, out
    assert registry.call("DELETE", url)[0] == 204
    code, out = tf.plan(work)
    assert code == 2 and "meshfed_service_export.cart will be created" in out, out
    tf.apply(work)
    assert registry.call("GET", url)[0] == 200
    assert tf.plan(work)[0] == 0

    # import by cluster/namespace/name: the plan is clean again
    tf.run(work, "state", "rm", "meshfed_service_export.cart")
    tf.run(
        work, "import", "-input=false", "-no-color", "meshfed_service_export.cart",
        "tfx-vms/shop/cart",
    )  # fmt: skip
    code, out = tf.plan(work)
    assert code == 0, out

    # an export the cluster's agent holds: the registry's 409 is the diagnostic; an
    # existing static export is not silently adopted by a second configuration
    hold_by_agent(registry.store_url)
    held = work.parent / "held"
    write_config(
        held,
        registry,
        """\
        resource "meshfed_service_export" "held" {
          cluster   = "tfx-vms"
          namespace = "shop"
          name      = "held"
          ports     = [{ port = 80 }]
        }

        resource "meshfed_service_export" "taken" {
          cluster   = "tfx-vms"
          namespace = "shop"
          name      = "cart"
          ports     = [{ port = 8080, name = "http" }]
        }
        """,
    )
    proc = tf.run(held, "apply", "-auto-approve", "-input=false", "-no-color", ok=(1,))
    text = " ".join((proc.stdout + proc.stderr).split())
    assert "(409 HeldByAgent): cannot create service export 'tfx-vms/shop/held'" in text, text
    assert "is reported by the cluster's agent" in text, text
    assert "service export 'tfx-vms/shop/cart' already exists" in text, text  # not adopted
    assert "terraform import <address> tfx-vms/shop/cart" in text, text

    # destroy
    tf.destroy(work)
    assert registry.call("GET", url)[0] == 404
    assert registry.call("GET", "/api/v1/clusters/tfx-vms")[0] == 200  # not Terraform's
