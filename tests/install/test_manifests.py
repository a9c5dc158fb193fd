"""Every rendered manifest validates offline against the Kubernetes OpenAPI schemas
(kubernetes-validate, strict: unknown fields are errors) for the oldest and newest
Kubernetes it bundles, follows the conventions the issue lists, and the MCS objects
the agent writes validate against the CRDs meshfed ships."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from kubernetes_validate import utils as kv_utils
from referencing import Registry, Resource

from federation.install import (
    Options,
    agent,
    etcd,
    needs_admin_token,
    needs_trust,
    render,
    to_json,
    to_yaml,
)
from federation.install.trustdir import StoreTLS
from federation.store.etcd_url import parse as parse_etcd_url
from tests.install.conftest import MATRIX

TlsFor = Callable[[str], StoreTLS]

ROOT = Path(__file__).resolve().parents[2]
VERSIONS = sorted({kv_utils.all_versions()[0], kv_utils.all_versions()[-1]})
IDS = [i for i, _ in MATRIX]
OPTS = [o for _, o in MATRIX]

Obj = dict[str, Any]
ADMIN_TOKEN = b"install-admin." + b"s" * 43 + b"\n"  # the shape admin_token.ensure makes


@functools.cache
def k8s_validator(version: str, kind: str, api_version: str) -> jsonschema.Validator:
    """kubernetes-validate's own schema lookup (utils.validate), loaded once per kind.

    `kubernetes_validate.validate` re-reads the multi-megabyte definitions file on
    every call; the matrix below validates hundreds of objects.
    """
    group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    folder = f"kubernetes-json-schema/v{version}-local-strict"
    schema = kv_utils.schema_contents(f"{folder}/{kind.lower()}-{group_version}.json", version)
    definitions = kv_utils.schema_contents(f"{folder}/_definitions.json", version)
    registry: Registry[Any] = Resource.from_contents(schema) @ Registry()
    registry = Resource.from_contents(definitions) @ registry
    return jsonschema.Draft202012Validator(schema, registry=registry)


def k8s_validate(obj: Obj, version: str) -> None:
    k8s_validator(version, obj["kind"], obj["apiVersion"]).validate(obj)


def cli_render(opts: Options, store_tls: TlsFor) -> list[Obj]:
    """What `meshfed install` prints for `opts`: with the trust directory's material."""
    tls = store_tls(opts.namespace) if needs_trust(opts) else None
    return render(opts, tls, ADMIN_TOKEN if needs_admin_token(opts) else None)


def test_the_cached_validator_agrees_with_kubernetes_validate() -> None:
    objs = render(Options(("gateway",), cluster="east", registry="r:9471"))
    dep = next(o for o in objs if o["kind"] == "Deployment")
    bad = {**dep, "spec": {**dep["spec"], "replicaz": 2}}
    for version in VERSIONS:
        for o in objs:
            kubernetes_validate.validate(o, version, strict=True)
            k8s_validate(o, version)
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(bad, version, strict=True)
        with pytest.raises(jsonschema.ValidationError):
            k8s_validate(bad, version)


def pod_templates(objs: list[Obj]) -> list[tuple[Obj, Obj]]:
    return [(o, o["spec"]["template"]) for o in objs if o["kind"] in ("Deployment", "StatefulSet")]


def test_both_ends_of_the_supported_range_are_checked() -> None:
    assert len(VERSIONS) == 2 and VERSIONS[0].startswith("1.2")


@pytest.mark.parametrize("opts", OPTS, ids=IDS)
def test_every_object_validates_strictly_for_oldest_and_newest_kubernetes(
    opts: Options, store_tls: TlsFor
) -> None:
    # as the CLI renders it: the admin token's Secret, and with --store etcd the etcd
    # and root Secrets, included
    objs = cli_render(opts, store_tls)
    assert objs
    for version in VERSIONS:
        for o in objs:
            k8s_validate(o, version)
    # the printed forms carry exactly these objects
    assert [d for d in yaml.safe_load_all(to_yaml(objs)) if d] == objs
    assert yaml.safe_load(to_json(objs))["items"] == objs


@pytest.mark.parametrize("opts", OPTS, ids=IDS)
def test_conventions(opts: Options, store_tls: TlsFor) -> None:
    objs = cli_render(opts, store_tls)
    names = [(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]) for o in objs]
    assert len(names) == len(set(names))
    for o in objs:
        if o["kind"] in ("Namespace", "CustomResourceDefinition"):
            continue
        labels = o["metadata"]["labels"]
        for key in ("name", "instance", "component", "part-of", "managed-by", "version"):
            assert labels.get(f"app.kubernetes.io/{key}"), (o["kind"], key)
        assert labels["app.kubernetes.io/managed-by"] == "meshfed-install"
        if o["metadata"].get("namespace") is None:
            assert o["kind"].startswith("Cluster"), o["kind"]
    templates = pod_templates(objs)
    assert templates
    for owner, tpl in templates:
        spec = tpl["spec"]
        assert owner["spec"]["selector"]["matchLabels"].items() <= tpl["metadata"]["labels"].items()
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for c in spec["containers"]:
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["capabilities"] == {"drop": ["ALL"]}
            assert set(c["resources"]) == {"requests", "limits"}
            assert "livenessProbe" in c and "readinessProbe" in c
    policies = {o["metadata"]["name"] for o in objs if o["kind"] == "NetworkPolicy"}
    workloads = {o["metadata"]["name"] for o, _ in templates}
    assert policies == workloads  # every workload is fenced
    for o in objs:
        if o["kind"] == "NetworkPolicy":
            assert o["spec"]["policyTypes"] == ["Ingress", "Egress"]


def by_kind(objs: list[Obj], kind: str, name: str) -> Obj:
    return next(o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name)


def container(objs: list[Obj], kind: str, name: str) -> Obj:
    c: Obj = by_kind(objs, kind, name)["spec"]["template"]["spec"]["containers"][0]
    return c


def test_registry_probes_store_and_budget() -> None:
    objs = render(Options(("registry",), store="etcd", replicas=3))
    reg = container(objs, "Deployment", "meshfed-registry")
    assert reg["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert reg["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert by_kind(objs, "Deployment", "meshfed-registry")["spec"]["replicas"] == 3
    svc = by_kind(objs, "Service", "meshfed-registry")
    assert {p["port"] for p in svc["spec"]["ports"]} == {9470, 9471, 9472}
    assert by_kind(objs, "PodDisruptionBudget", "meshfed-registry")
    store = next(a for a in reg["args"] if a.startswith("--store="))
    url = parse_etcd_url(store.removeprefix("--store="))  # the registry accepts it
    assert len(url.endpoints) == 3
    sts = by_kind(objs, "StatefulSet", "meshfed-etcd")
    assert sts["spec"]["replicas"] == 3 and sts["spec"]["volumeClaimTemplates"]
    cmd = container(objs, "StatefulSet", "meshfed-etcd")["command"]
    assert "--max-txn-ops=10000" in cmd
    assert "--client-cert-auth=true" in cmd and "--peer-client-cert-auth=true" in cmd
    volumes = sts["spec"]["template"]["spec"]["volumes"]
    assert {v["secret"]["secretName"] for v in volumes} == {
        "meshfed-etcd-server-tls",
        "meshfed-etcd-peer-tls",
    }

    pg = render(Options(("registry",), store="postgres"))
    env = container(pg, "Deployment", "meshfed-registry")["env"]
    store_env = next(e for e in env if e["name"] == "MESHFED_STORE")
    assert store_env["valueFrom"]["secretKeyRef"] == {
        "name": "meshfed-registry-store",
        "key": "url",
    }
    assert not [o for o in pg if o["kind"] == "StatefulSet"]
    # the store URL of an external store is not a secret reference but the flag
    ext = render(Options(("registry",), store="external:postgresql://db:5432/m"))
    assert (
        "--store=postgresql://db:5432/m" in container(ext, "Deployment", "meshfed-registry")["args"]
    )


def test_gateway_spread_service_hpa_and_scraping() -> None:
    objs = render(Options(("gateway",), cluster="east", registry="r.example.com:9471"))
    dep = by_kind(objs, "Deployment", "meshfed-gateway")
    tpl = dep["spec"]["template"]
    zones = [
        t
        for t in tpl["spec"]["topologySpreadConstraints"]
        if t["topologyKey"] == "topology.kubernetes.io/zone"
    ]
    assert zones and zones[0]["whenUnsatisfiable"] == "DoNotSchedule"
    assert tpl["metadata"]["annotations"] == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": "15021",
        "prometheus.io/path": "/metrics",
    }
    c = tpl["spec"]["containers"][0]
    assert c["readinessProbe"]["httpGet"] == {
        "path": "/ready",
        "port": "http-admin",
        "scheme": "HTTP",
    }
    svc = by_kind(objs, "Service", "meshfed-gateway")
    assert svc["spec"]["type"] == "LoadBalancer"
    assert [p["port"] for p in svc["spec"]["ports"]] == [15443]
    hpa = by_kind(objs, "HorizontalPodAutoscaler", "meshfed-gateway")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["minReplicas"] == 2 and hpa["spec"]["maxReplicas"] >= 2
    assert by_kind(objs, "PodDisruptionBudget", "meshfed-gateway")["spec"]["maxUnavailable"] == 1
    assert "--registry=r.example.com:9471" in c["args"]


@pytest.mark.parametrize("component", ["gateway", "agent"])
def test_the_join_token_is_in_the_environment_never_in_args(
    component: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A `--join-token=$(VAR)` arg is expanded by the kubelet and shows in `ps`: the
    token comes only from the Secret as $MESHFED_JOIN_TOKEN, and the args parse."""
    objs = render(Options((component,), cluster="east", registry="r.example.com:9471"))
    dep = by_kind(objs, "Deployment", f"meshfed-{component}")
    for c in dep["spec"]["template"]["spec"]["containers"]:
        assert not any("join-token" in a or "MESHFED_JOIN_TOKEN" in a for a in c["args"])
        assert not any("join-token" in a for a in c.get("command", []))
        env = {e["name"]: e for e in c.get("env", [])}
        assert env["MESHFED_JOIN_TOKEN"]["valueFrom"]["secretKeyRef"] == {
            "name": "meshfed-join-tokens",
            "key": component,
        }
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    monkeypatch.setenv("MESHFED_JOIN_TOKEN", "abcdef.s3cret")
    if component == "gateway":
        from eastwest_gateway.main import build_parser

        args = build_parser().parse_args(c["args"][1:])
        assert args.join_token is None and args.join_token_file is None
        assert args.registry == "r.example.com:9471"
    else:
        from federation.client import cli_args

        assert cli_args.join_token(None, None, {"MESHFED_JOIN_TOKEN": "abcdef.s3cret"}).source == (
            "$MESHFED_JOIN_TOKEN"
        )


def test_agent_renders_the_mcs_crds_verbatim_with_their_license() -> None:
    shipped = sorted((ROOT / "federation/install/crds").glob("*.yaml"))
    upstream = sorted((ROOT / "tests/fakekube/crds").glob("*.yaml"))
    assert [p.name for p in shipped] == [p.name for p in upstream]
    for mine, theirs in zip(shipped, upstream, strict=True):
        assert mine.read_bytes() == theirs.read_bytes()
        assert mine.read_text().startswith("# Copyright 2020 The Kubernetes Authors.")
    objs = render(Options(("agent",), cluster="east", registry="r:9471"))
    crds = [o for o in objs if o["kind"] == "CustomResourceDefinition"]
    assert crds == [yaml.safe_load(p.read_text()) for p in shipped]
    assert "Licensed under the Apache License" in to_yaml(objs)
    assert not [
        o
        for o in render(Options(("agent",), cluster="east", registry="r:9471", crds=False))
        if o["kind"] == "CustomResourceDefinition"
    ]


def crd_schema(kind: str, version: str = "v1alpha1") -> Obj:
    crd = next(c for c in agent.crds() if c["spec"]["names"]["kind"] == kind)
    v = next(v for v in crd["spec"]["versions"] if v["name"] == version)
    schema: Obj = v["schema"]["openAPIV3Schema"]
    return schema


def test_mcs_objects_validate_against_the_shipped_crd_schemas() -> None:
    """What the agent writes (ServiceImport) and reads (ServiceExport) fits the CRDs."""
    from discovery_sync.kube import plan
    from discovery_sync.types import ImportedService
    from federation.model import Endpoint, Port, ServiceKey

    port = Port(8080, "TCP", "http")
    svc = ImportedService(
        ServiceKey("shop", "cart"),
        (port,),
        ("west",),
        (Endpoint("west", "shop", "cart", "10.3.0.5", (port,), "w-a", True, 1),),
        ips=("198.18.0.10",),
    )
    imp = {**plan.service_import(svc), "status": plan.import_status(svc)}
    jsonschema.Draft7Validator(crd_schema("ServiceImport")).validate(imp)
    export = {
        "apiVersion": "multicluster.x-k8s.io/v1alpha1",
        "kind": "ServiceExport",
        "metadata": {"name": "cart", "namespace": "shop"},
        "status": {
            "conditions": [
                {
                    "type": "Valid",
                    "status": "True",
                    "reason": "Valid",
                    "message": "",
                    "lastTransitionTime": "2026-01-01T00:00:00Z",
                }
            ]
        },
    }
    jsonschema.Draft7Validator(crd_schema("ServiceExport")).validate(export)
    bad = {**imp, "spec": {**imp["spec"], "type": "Nonsense"}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(crd_schema("ServiceImport")).validate(bad)


def test_etcd_tls_names_match_the_store_url() -> None:
    opts = Options(("registry",), namespace="mesh")
    assert etcd.member_host(opts, 0) == "meshfed-etcd-0.meshfed-etcd.mesh.svc"
    assert etcd.member_host(opts, 0) in etcd.store_url(opts)
