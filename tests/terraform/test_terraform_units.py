"""The provider's pure parts in-process: reconciling reads, types, errors, import weight."""

from __future__ import annotations

import json
import subprocess
import sys

from tf import types as t

from terraform.provider.client import problem_error
from terraform.provider.common import canonical_host_port, reconcile, same_host_ports, same_set
from terraform.provider.datasources import SERVICE
from terraform.provider.tftypes import Map
from tests.terraform.conftest import REPO


def test_reconcile_keeps_unset_defaults_null_and_canonical_spellings() -> None:
    server = {"name": "x", "network": "default", "labels": {}, "namespaces": ["a", "b"]}
    fields = ("name", "network", "labels", "namespaces")
    defaults = {"network": "default", "labels": {}}
    prior = {"name": "x", "network": None, "labels": None, "namespaces": ["b", "a", "a"]}
    state = reconcile(server, prior, fields, defaults, {"namespaces": same_set})
    assert state == {"name": "x", "network": None, "labels": None, "namespaces": ["b", "a", "a"]}
    # a real change outside Terraform is drift, not kept
    drifted = reconcile({**server, "network": "other"}, prior, fields, defaults)
    assert drifted["network"] == "other"


def test_gateway_addresses_compare_as_the_registry_canonicalises_them() -> None:
    assert canonical_host_port("GW.Example.com:15443") == "gw.example.com:15443"
    assert canonical_host_port("[2001:DB8:0::1]:443") == "[2001:db8::1]:443"
    assert same_host_ports(["GW.example:1", "10.0.0.1:2"], ["gw.example:1", "10.0.0.1:2"])
    assert not same_host_ports(["a:1", "b:2"], ["b:2", "a:1"])  # order is meaningful


def test_type_signatures_are_terraform_type_json() -> None:
    assert json.loads(Map(t.String()).tf_type()) == ["map", "string"]
    sig = json.loads(SERVICE.tf_type())
    assert sig[0] == "object"
    assert sig[1]["ports"] == [
        "list",
        [
            "object",
            {"port": "number", "protocol": "string", "name": "string", "app_protocol": "string"},
        ],
    ]


def test_problem_json_keeps_the_registry_detail_and_field() -> None:
    body = json.dumps(
        {
            "title": "Invalid request",
            "status": 422,
            "detail": "name: bad",
            "reason": "Invalid",
            "field": "name",
        }
    ).encode()
    exc = problem_error(422, body)
    assert (exc.detail, exc.field, exc.reason) == ("name: bad", "name", "Invalid")
    assert exc.summary() == "meshfed API: Invalid request (422 Invalid)"
    assert problem_error(502, b"<html>bad gateway</html>").detail == "<html>bad gateway</html>"


def test_provider_import_stays_light() -> None:
    """Terraform starts the plugin several times per command: no HTTP stack, no meshfed."""
    code = "import sys, terraform.provider.provider; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    for heavy in ("urllib.request", "http.client", "federation", "fastapi", "httpx", "grpc"):
        assert heavy not in out, heavy
