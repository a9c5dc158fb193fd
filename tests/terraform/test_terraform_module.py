"""The `federation` module and the `two-clouds` example, installed from a filesystem mirror.

These run `terraform init` offline (the provider from a `filesystem_mirror`, the
module from a local path), which is how terraform/README.md tells a newcomer to
run the example; the configuration is copied to a temp dir so nothing (lock
file, `.terraform/`, state) is written into the repository.
"""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

from tests.terraform.conftest import (
    EXAMPLE_DIR,
    MODULE_DIR,
    Registry,
    Terraform,
    with_registry_env,
    write_config,
)


def copy_tree(tmp_path: Path) -> Path:
    """terraform/modules and terraform/examples under tmp_path, relative paths intact."""
    root = tmp_path / "terraform"
    shutil.copytree(MODULE_DIR, root / "modules" / "federation")
    shutil.copytree(EXAMPLE_DIR, root / "examples" / "two-clouds")
    return root


def test_two_clouds_example_applies_and_destroys(
    tf_mirror: Terraform, registry: Registry, tmp_path: Path
) -> None:
    work = copy_tree(tmp_path) / "examples" / "two-clouds"
    tf_mirror.run(work, "init", "-input=false", "-no-color")
    assert (work / ".terraform.lock.hcl").exists()
    args = ("-var", f"endpoint={registry.endpoint}", "-var", f"token_file={registry.token_file}")
    tf_mirror.apply(work, *args)

    for name, region in (("aws-use1", "us-east-1"), ("gcp-euw1", "europe-west1")):
        status, found = registry.call("GET", f"/api/v1/clusters/{name}")
        assert status == 200 and found["region"] == region
    assert registry.call("GET", "/api/v1/links/aws-use1/gcp-euw1")[0] == 200

    out = tf_mirror.outputs(work)
    assert out["trust_domains"] == {
        "aws-use1": "aws-use1.meshfed.local",
        "gcp-euw1": "gcp-euw1.meshfed.local",
    }
    assert out["links"] == {"aws-use1/gcp-euw1": "Unknown"}
    assert set(out["join_tokens"]) == {"aws-use1", "gcp-euw1"}
    assert all("." in token for token in out["join_tokens"].values())
    assert "ca-key.pem" in out["ca"]["aws-use1"]["istio"]
    assert "issuer.key" in out["ca"]["gcp-euw1"]["linkerd"]
    assert out["aws_roots_pem"].startswith("-----BEGIN CERTIFICATE-----")

    assert tf_mirror.plan(work, *args)[0] == 0
    tf_mirror.destroy(work, *args)
    for name in ("aws-use1", "gcp-euw1"):
        assert registry.call("GET", f"/api/v1/clusters/{name}")[0] == 404


def test_module_hub_and_spoke_then_full_mesh(
    tf_mirror: Terraform, registry: Registry, tmp_path: Path
) -> None:
    module = copy_tree(tmp_path) / "modules" / "federation"
    work = tmp_path / "root"

    def configure(topology: str) -> None:
        write_config(
            work,
            None,  # the provider is configured from MESHFED_ENDPOINT / MESHFED_TOKEN
            textwrap.dedent(
                f"""\
                module "fed" {{
                  source   = "{module}"
                  topology = "{topology}"
                  hub      = "hub"
                  clusters = [
                    {{ name = "spoke-a", region = "us-east-1", zone = "us-east-1a" }},
                    {{ name = "hub", region = "eu-central-1", zone = "eu-central-1a",
                      labels = {{ role = "hub" }} }},
                    {{ name = "spoke-b", region = "ap-east-1", zone = "ap-east-1a",
                      network = "b-net" }},
                  ]
                }}

                output "links" {{ value = module.fed.links }}
                """
            ),
        )

    env_tf = with_registry_env(tf_mirror, registry)
    configure("hub-and-spoke")
    env_tf.run(work, "init", "-input=false", "-no-color")
    env_tf.apply(work)
    assert set(env_tf.outputs(work)["links"]) == {"hub/spoke-a", "hub/spoke-b"}
    links = {(x["a"], x["b"]) for x in registry.call("GET", "/api/v1/links")[1]["items"]}
    assert {("hub", "spoke-a"), ("hub", "spoke-b")} <= links
    assert ("spoke-a", "spoke-b") not in links
    assert env_tf.plan(work)[0] == 0

    configure("full-mesh")
    code, out = env_tf.plan(work)
    assert code == 2, out
    assert "Plan: 1 to add, 0 to change, 0 to destroy" in out, out  # only spoke-a/spoke-b
    env_tf.apply(work)
    assert set(env_tf.outputs(work)["links"]) == {"hub/spoke-a", "hub/spoke-b", "spoke-a/spoke-b"}
    assert env_tf.plan(work)[0] == 0

    env_tf.destroy(work)
    remaining = {c["name"] for c in registry.call("GET", "/api/v1/clusters")[1]["items"]}
    assert not remaining & {"hub", "spoke-a", "spoke-b"}
    assert not registry.call("GET", "/api/v1/links")[1]["items"]
