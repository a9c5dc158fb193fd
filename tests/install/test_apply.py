"""`meshfed install --apply` against the fake Kubernetes API: it creates exactly the
rendered objects, and applying again writes nothing (resourceVersions unchanged)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from discovery_sync.kube.apply import apply_manifests, contains
from federation.cli import main
from federation.install import Options, admin_token, render, trustdir
from tests.fakekube import FakeKube

Key = tuple[str, str, str]  # (kind, namespace, name)


def live(kube: FakeKube) -> dict[Key, dict[str, Any]]:
    kinds = {(t.group, t.plural): t.kind for t in kube.store.types.values()}
    out = {}
    for (group, plural), objs in kube.store.objects.items():
        for (ns, name), obj in objs.items():
            out[(kinds[(group, plural)], ns, name)] = obj
    return out


def key(o: dict[str, Any]) -> Key:
    return (o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"])


def kubeconfig(kube: FakeKube, tmp_path: Path) -> str:
    path = tmp_path / "kubeconfig"
    path.write_text(kube.kubeconfig_yaml("east-ctx"))
    return str(path)


def writes(kube: FakeKube) -> list[tuple[str, str]]:
    return [(m, p) for m, p in kube.requests if m != "GET"]


def test_cli_apply_creates_exactly_the_rendered_objects_and_is_idempotent(
    cluster: FakeKube, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = set(live(cluster))
    config = kubeconfig(cluster, tmp_path)
    trust = tmp_path / "trust"
    argv = ["install", "--component", "all", "--cluster", "east", "--store", "etcd"]
    argv += ["--apply", "--context", "east-ctx", "--kubeconfig", config, "--trust-dir", str(trust)]
    assert main(argv) == 0
    out = capsys.readouterr().out.splitlines()
    # what the CLI rendered: the same trust directory, re-read
    tls = trustdir.ensure(trust, "meshfed-system", datetime.now(UTC))
    admin = admin_token.ensure(trust)
    rendered = render(Options(("registry", "agent", "gateway"), cluster="east"), tls, admin)
    assert {"meshfed-etcd-server-tls", "meshfed-root-ca", "meshfed-admin-token"} <= {
        o["metadata"]["name"] for o in rendered if o["kind"] == "Secret"
    }
    assert len(out) == len(rendered) and all(line.endswith(" created") for line in out), out
    now = live(cluster)
    assert set(now) - before == {key(o) for o in rendered}
    for o in rendered:  # each object holds what was rendered
        body = {k: v for k, v in o.items() if k not in ("apiVersion", "kind")}
        assert contains(now[key(o)], body), key(o)
    versions = {k: v["metadata"]["resourceVersion"] for k, v in now.items()}
    n_writes = len(writes(cluster))

    assert main(argv) == 0  # again: nothing to do
    out = capsys.readouterr().out.splitlines()
    assert all(line.endswith(" unchanged") for line in out), out
    assert len(writes(cluster)) == n_writes
    assert {k: v["metadata"]["resourceVersion"] for k, v in live(cluster).items()} == versions


def test_apply_changes_only_what_differs_and_keeps_server_owned_fields(
    cluster: FakeKube, tmp_path: Path
) -> None:
    config = kubeconfig(cluster, tmp_path)
    opts = Options(("registry", "gateway"), cluster="east", store="postgres", replicas=2)
    assert {r.action for r in apply_manifests(render(opts), config, "east-ctx")} == {"created"}
    svc_key = ("Service", "meshfed-system", "meshfed-registry")
    cluster_ip = live(cluster)[svc_key]["spec"]["clusterIP"]
    # someone scales the gateway (the HPA) and labels the registry Service
    dep_rt = cluster.store.type("apps", "v1", "deployments")
    gw = cluster.store.get(dep_rt, "meshfed-system", "meshfed-gateway")
    gw["spec"]["replicas"] = 5
    cluster.store.update(dep_rt, "meshfed-system", "meshfed-gateway", gw)
    svc_rt = cluster.store.type("", "v1", "services")
    svc = cluster.store.get(svc_rt, "meshfed-system", "meshfed-registry")
    svc["metadata"]["labels"]["team"] = "platform"
    cluster.store.update(svc_rt, "meshfed-system", "meshfed-registry", svc)

    bigger = Options(("registry", "gateway"), cluster="east", store="postgres", replicas=3)
    results = {
        (r.kind, r.name): r.action for r in apply_manifests(render(bigger), config, "east-ctx")
    }
    changed = {k for k, v in results.items() if v != "unchanged"}
    assert changed == {
        ("Deployment", "meshfed-registry"),
        ("HorizontalPodAutoscaler", "meshfed-gateway"),
    }, results
    now = live(cluster)
    assert now[("Deployment", "meshfed-system", "meshfed-registry")]["spec"]["replicas"] == 3
    assert now[("Deployment", "meshfed-system", "meshfed-gateway")]["spec"]["replicas"] == 5
    assert now[svc_key]["spec"]["clusterIP"] == cluster_ip
    assert now[svc_key]["metadata"]["labels"]["team"] == "platform"


def test_an_existing_crd_is_kept(cluster: FakeKube, tmp_path: Path) -> None:
    config = kubeconfig(cluster, tmp_path)
    opts = Options(("agent",), cluster="east", registry="r.example.com:9471")
    crd = next(o for o in render(opts) if o["kind"] == "CustomResourceDefinition")
    older = {**crd, "metadata": {**crd["metadata"], "labels": {"installed-by": "someone"}}}
    older = {k: v for k, v in older.items() if k not in ("apiVersion", "kind")}
    older["spec"] = {**crd["spec"], "versions": crd["spec"]["versions"][:1]}
    rt = cluster.store.type("apiextensions.k8s.io", "v1", "customresourcedefinitions")
    cluster.store.create(rt, "", older)
    results = {r.name: r.action for r in apply_manifests(render(opts), config, "east-ctx")}
    assert results[crd["metadata"]["name"]] == "kept"
    assert (
        live(cluster)[key({**crd, "metadata": {"name": crd["metadata"]["name"]}})]["spec"][
            "versions"
        ]
        == crd["spec"]["versions"][:1]
    )


def test_apply_to_an_unknown_context_fails_cleanly(
    cluster: FakeKube, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = kubeconfig(cluster, tmp_path)
    argv = ["install", "--component", "registry", "--apply", "--context", "nope"]
    argv += ["--trust-dir", str(tmp_path / "trust")]
    assert main([*argv, "--kubeconfig", config]) == 1
    err = capsys.readouterr().err.splitlines()  # the trust directory's notes, then the error
    assert err[-1].startswith("error:") and "nope" in err[-1]
    assert writes(cluster) == []
