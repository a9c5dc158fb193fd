"""`meshfed link` / `unlink` on the Kubernetes side: two fake API servers are two
clusters, the real CLI runs in subprocesses against a real `meshfed serve`."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from cryptography import x509

from federation.cli import linkplan as plan
from federation.errors import InvalidToken
from federation.registry.trust import TrustService
from federation.store import Store
from tests.cli.conftest import Registry
from tests.fakekube import FakeKube
from trust_bundle import PassphraseProtector

FAIL = "\u00d7"
Snapshot = dict[tuple[str, str, str], str]


@pytest.fixture
def kubes() -> Iterator[dict[str, FakeKube]]:
    servers = {name: FakeKube().start() for name in ("one", "two", "three")}
    try:
        yield servers
    finally:
        for server in servers.values():
            server.stop()


def kubeconfig(path: Path, contexts: dict[str, FakeKube]) -> str:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": next(iter(contexts)),
        "clusters": [{"name": c, "cluster": {"server": k.url}} for c, k in contexts.items()],
        "users": [{"name": c, "user": {"token": "fake"}} for c in contexts],
        "contexts": [{"name": c, "context": {"cluster": c, "user": c}} for c in contexts],
    }
    path.write_text(yaml.safe_dump(config))
    return str(path)


def snapshot(kube: FakeKube) -> Snapshot:
    """Every object the fake holds, with its resourceVersion."""
    with kube.store.changed:
        return {
            (plural, ns, name): obj["metadata"]["resourceVersion"]
            for (_, plural), bucket in kube.store.objects.items()
            for (ns, name), obj in bucket.items()
        }


def obj(kube: FakeKube, plural: str, ns: str, name: str) -> dict[str, Any]:
    group = "rbac.authorization.k8s.io" if "role" in plural else ""
    return kube.store.get(kube.store.type(group, "v1", plural), ns, name)


def add(reg: Registry, *names: str) -> None:
    """Register clusters through the API (the CLI's `cluster add` has its own tests)."""
    headers = {"Authorization": f"Bearer {reg.token_file.read_text().strip()}"}
    for name in names:
        body = {
            "name": name,
            "region": "us-east",
            "zone": "zone-a",
            "trust_domain": f"{name}.local",
        }
        response = httpx.post(f"{reg.url}/api/v1/clusters", json=body, headers=headers)
        assert response.status_code == 201, response.text


def link_json(reg: Registry, *args: str) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(reg.ok("link", *args, "-o", "json"))
    assert out["ok"], out
    return out


def expected(a: str, b: str, lid: str, rbac: list[tuple[str, str]]) -> set[tuple[str, str, str]]:
    sys_ns = plan.SYSTEM_NAMESPACE
    return {
        ("namespaces", "", sys_ns),
        ("serviceaccounts", sys_ns, "meshfed-agent"),
        ("roles", sys_ns, "meshfed-agent-leader-election"),
        ("rolebindings", sys_ns, "meshfed-agent-leader-election"),
        ("secrets", sys_ns, f"meshfed-agent-join-{b}"),
        *((plural, ns, f"meshfed-agent-{lid}") for plural, ns in rbac),
    }


def test_link_makes_exactly_the_agent_objects_twice_is_a_noop_and_unlink_removes_them(
    registry: Registry, kubes: dict[str, FakeKube], tmp_path: Path
) -> None:
    add(registry, "ka", "kb")
    one, two = kubes["one"], kubes["two"]
    cfg = kubeconfig(tmp_path / "kubeconfig", {"ctx-a": one, "ctx-b": two})
    flags = ("--kubeconfig", cfg, "--context-a", "ctx-a", "--context-b", "ctx-b")
    before = {"ka": snapshot(one), "kb": snapshot(two)}

    out = link_json(registry, "ka", "kb", *flags)
    cluster_wide = [("clusterroles", ""), ("clusterrolebindings", "")]
    for name, peer, kube in (("ka", "kb", one), ("kb", "ka", two)):
        made = set(snapshot(kube)) - set(before[name])
        assert made == expected(name, peer, "ka-kb", cluster_wide), made
        role = obj(kube, "clusterroles", "", "meshfed-agent-ka-kb")
        assert role["rules"] == plan.AGENT_RULES
        assert role["metadata"]["labels"] == {
            "app.kubernetes.io/managed-by": "meshfed",
            "meshfed.io/link": "ka-kb",
            "meshfed.io/cluster": name,
        }
        binding = obj(kube, "clusterrolebindings", "", "meshfed-agent-ka-kb")
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "meshfed-agent", "namespace": "meshfed-system"}
        ]
        assert binding["roleRef"]["name"] == "meshfed-agent-ka-kb"
        secret = obj(kube, "secrets", "meshfed-system", f"meshfed-agent-join-{peer}")
        assert secret["metadata"]["labels"]["meshfed.io/link"] == "ka-kb"
        expires = datetime.fromisoformat(secret["metadata"]["annotations"]["meshfed.io/expires"])
        assert timedelta(minutes=55) < expires - datetime.now(UTC) <= timedelta(hours=1)
        token = base64.b64decode(secret["data"]["token"]).decode()
        assert token.count(".") == 1 and len(token) > 20
        shared = obj(kube, "namespaces", "", "meshfed-system")
        assert shared["metadata"]["annotations"]["meshfed.io/links"] == "ka-kb"
    assert set(out["credential_expiry"]) == {"ka", "kb"}

    after_first = {"ka": snapshot(one), "kb": snapshot(two)}
    revisions = (one.store.rv, two.store.rv)
    again = link_json(
        registry, "kb", "ka", *flags[:2], "--context-a", "ctx-b", "--context-b", "ctx-a"
    )
    assert {"ka": snapshot(one), "kb": snapshot(two)} == after_first
    assert (one.store.rv, two.store.rv) == revisions  # not one write
    kube_lines = [c for c in again["checks"] if c["section"] == "kubernetes"]
    assert len(kube_lines) == 14
    assert all(c["detail"].startswith("unchanged") for c in kube_lines), kube_lines

    result = registry.run(
        "unlink", "kb", "ka", *flags[:2], "--context-a", "ctx-b", "--context-b", "ctx-a"
    )
    assert result.returncode == 0, result.stderr
    assert "ka: deleted Secret meshfed-system/meshfed-agent-join-kb" in result.stdout
    assert "link between kb and ka removed" in result.stdout
    assert set(snapshot(one)) == set(before["ka"])
    assert set(snapshot(two)) == set(before["kb"])
    again_out = registry.ok("unlink", "ka", "kb", *flags)
    assert "deleted" not in again_out and "no link between ka and kb" in again_out


def test_namespaces_scope_the_rbac_and_shared_objects_stay_while_used(
    registry: Registry, kubes: dict[str, FakeKube], tmp_path: Path
) -> None:
    add(registry, "sx", "sy", "sz")
    one, two, three = kubes["one"], kubes["two"], kubes["three"]
    for kube in (one, two, three):
        for ns in ("shop", "cart"):
            kube.store.create(
                kube.store.type("", "v1", "namespaces"), "", {"metadata": {"name": ns}}
            )
    cfg = kubeconfig(tmp_path / "kubeconfig", {"sx": one, "sy": two, "sz": three})
    before = {k: snapshot(v) for k, v in kubes.items()}
    link_json(registry, "sx", "sy", "--kubeconfig", cfg, "--namespaces", "shop,cart")
    rbac = [(p, ns) for ns in ("shop", "cart") for p in ("roles", "rolebindings")]
    assert set(snapshot(one)) - set(before["one"]) == expected("sx", "sy", "sx-sy", rbac)
    role = obj(one, "roles", "shop", "meshfed-agent-sx-sy")
    assert role["rules"] == plan.AGENT_RULES
    assert not any(k[0] == "clusterroles" for k in set(snapshot(one)) - set(before["one"]))

    link_json(registry, "sx", "sz", "--kubeconfig", cfg)
    assert (
        obj(one, "namespaces", "", "meshfed-system")["metadata"]["annotations"]["meshfed.io/links"]
        == "sx-sy,sx-sz"
    )
    # someone else's object in meshfed-system: unlink must leave the namespace
    one.store.create(
        one.store.type("", "v1", "configmaps"), "meshfed-system", {"metadata": {"name": "mine"}}
    )
    out = registry.ok("unlink", "sx", "sy", "--kubeconfig", cfg)
    assert "sx: kept ServiceAccount meshfed-system/meshfed-agent (other links use it)" in out
    assert set(snapshot(two)) == set(before["two"])  # sy had only this link
    left = set(snapshot(one)) - set(before["one"])
    assert left == expected(
        "sx", "sz", "sx-sz", [("clusterroles", ""), ("clusterrolebindings", "")]
    ) | {("configmaps", "meshfed-system", "mine")}
    sa = obj(one, "serviceaccounts", "meshfed-system", "meshfed-agent")
    assert sa["metadata"]["annotations"]["meshfed.io/links"] == "sx-sz"
    out = registry.ok("unlink", "sx", "sz", "--kubeconfig", cfg)
    assert "sx: kept Namespace meshfed-system (not empty)" in out
    assert set(snapshot(one)) - set(before["one"]) == {
        ("namespaces", "", "meshfed-system"),
        ("configmaps", "meshfed-system", "mine"),
    }
    assert set(snapshot(three)) == set(before["three"])


def test_a_namespace_missing_in_a_cluster_fails_naming_it(
    registry: Registry, kubes: dict[str, FakeKube], tmp_path: Path
) -> None:
    add(registry, "nx", "ny")
    cfg = kubeconfig(tmp_path / "kubeconfig", {"nx": kubes["one"], "ny": kubes["two"]})
    result = registry.run("link", "nx", "ny", "--kubeconfig", cfg, "--namespaces", "nosuch")
    assert result.returncode == 1
    assert FAIL + " nx: Role nosuch/meshfed-agent-nx-ny" in result.stdout
    assert "nosuch" in result.stdout


def _certs(data: str) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(base64.b64decode(data))


def test_mesh_istio_writes_cacerts_that_chain_to_the_bundle_and_linkerd_its_issuer(
    registry: Registry, kubes: dict[str, FakeKube], tmp_path: Path
) -> None:
    add(registry, "ix", "iy")
    one, two = kubes["one"], kubes["two"]
    cfg = kubeconfig(tmp_path / "kubeconfig", {"ix": one, "iy": two})
    link_json(registry, "ix", "iy", "--kubeconfig", cfg, "--mesh", "istio")
    roots = x509.load_pem_x509_certificates(
        httpx.get(f"{registry.url}/api/v1/trust/roots.pem").content
    )
    for kube in (one, two):
        cacerts = obj(kube, "secrets", "istio-system", "cacerts")
        assert set(cacerts["data"]) == {
            "ca-cert.pem",
            "ca-key.pem",
            "root-cert.pem",
            "cert-chain.pem",
        }
        assert cacerts["type"] == "Opaque"
        (intermediate,) = _certs(cacerts["data"]["ca-cert.pem"])
        chain = _certs(cacerts["data"]["cert-chain.pem"])
        assert chain[0] == intermediate
        assert set(_certs(cacerts["data"]["root-cert.pem"])) == set(roots)
        issuer = next(r for r in roots if r.subject == intermediate.issuer)
        intermediate.verify_directly_issued_by(issuer)
        assert b"PRIVATE KEY" in base64.b64decode(cacerts["data"]["ca-key.pem"])
    revisions = (one.store.rv, two.store.rv)
    link_json(registry, "ix", "iy", "--kubeconfig", cfg, "--mesh", "istio")
    assert (one.store.rv, two.store.rv) == revisions

    add(registry, "lx", "ly")
    three = kubes["three"]
    cfg2 = kubeconfig(tmp_path / "kubeconfig2", {"lx": three, "ly": two})
    link_json(registry, "lx", "ly", "--kubeconfig", cfg2, "--mesh", "linkerd")
    issuer_secret = obj(three, "secrets", "linkerd", "linkerd-identity-issuer")
    assert issuer_secret["type"] == "kubernetes.io/tls"
    assert set(issuer_secret["data"]) == {"ca.crt", "tls.crt", "tls.key"}
    (cert,) = _certs(issuer_secret["data"]["tls.crt"])
    anchors = obj(three, "configmaps", "linkerd", "linkerd-identity-trust-roots")
    assert set(x509.load_pem_x509_certificates(anchors["data"]["ca-bundle.crt"].encode())) == set(
        roots
    )
    cert.verify_directly_issued_by(next(r for r in roots if r.subject == cert.issuer))

    registry.ok("unlink", "ix", "iy", "--kubeconfig", cfg)
    registry.ok("unlink", "lx", "ly", "--kubeconfig", cfg2)
    for kube in (one, two, three):
        assert not [
            k for k in snapshot(kube) if k[1] in ("istio-system", "linkerd", "meshfed-system")
        ]


def test_a_foreign_cacerts_is_left_alone_and_fails(
    registry: Registry, kubes: dict[str, FakeKube], tmp_path: Path
) -> None:
    add(registry, "fx", "fy")
    one = kubes["one"]
    store = one.store
    store.create(store.type("", "v1", "namespaces"), "", {"metadata": {"name": "istio-system"}})
    store.create(
        store.type("", "v1", "secrets"),
        "istio-system",
        {"metadata": {"name": "cacerts"}, "data": {}},
    )
    cfg = kubeconfig(tmp_path / "kubeconfig", {"fx": one, "fy": kubes["two"]})
    result = registry.run("link", "fx", "fy", "--kubeconfig", cfg, "--mesh", "istio")
    assert result.returncode == 1
    assert (
        FAIL + " fx: Secret istio-system/cacerts (exists and is not managed by meshfed"
        in result.stdout
    )
    assert obj(one, "secrets", "istio-system", "cacerts")["data"] == {}
    registry.ok("unlink", "fx", "fy", "--kubeconfig", cfg)
    assert obj(one, "secrets", "istio-system", "cacerts")["data"] == {}
    assert obj(one, "namespaces", "", "istio-system")


def test_rotation_keeps_a_valid_credential_at_all_times(
    registry: Registry, kubes: dict[str, FakeKube], tmp_path: Path
) -> None:
    add(registry, "rx", "ry")
    one = kubes["one"]
    cfg = kubeconfig(tmp_path / "kubeconfig", {"rx": one, "ry": kubes["two"]})
    link_json(registry, "rx", "ry", "--kubeconfig", cfg)
    first = obj(one, "secrets", "meshfed-system", "meshfed-agent-join-ry")
    old_token = first["data"]["token"]
    old_expiry = first["metadata"]["annotations"]["meshfed.io/expires"]
    start = one.store.rv

    out = link_json(
        registry, "rx", "ry", "--kubeconfig", cfg, "--rotate-credentials", "--credential-ttl", "2h"
    )
    line = next(c for c in out["checks"] if c["name"].startswith("rx: join token"))
    assert line["detail"].startswith("rotated") and old_expiry in line["detail"]
    events = [
        e
        for e in one.store.events_after(start)
        if e.key == ("", "secrets") and e.obj["metadata"]["name"] == "meshfed-agent-join-ry"
    ]
    assert [e.type for e in events] == ["MODIFIED"]  # replaced in place: never absent
    now = datetime.now(UTC)
    for e in events:
        notes = e.obj["metadata"]["annotations"]
        assert datetime.fromisoformat(notes["meshfed.io/expires"]) > now + timedelta(minutes=90)
        assert e.obj["data"]["previous-token"] == old_token
        assert notes["meshfed.io/previous-expires"] == old_expiry
        assert e.obj["data"]["token"] != old_token
    assert (
        out["credential_expiry"]["rx"]
        == events[-1].obj["metadata"]["annotations"]["meshfed.io/expires"]
    )
    # the registry records the soonest expiry on the link (API, `meshfed status`)
    headers = {"Authorization": f"Bearer {registry.token_file.read_text().strip()}"}
    link = httpx.get(f"{registry.url}/api/v1/links/rx/ry", headers=headers).json()
    assert link["credential_expiry"] is not None
    recorded = datetime.fromisoformat(link["credential_expiry"])
    assert recorded == min(datetime.fromisoformat(t) for t in out["credential_expiry"].values())
    valid = next(c for c in link["conditions"] if c["type"] == "CredentialsValid")
    assert (valid["status"], valid["reason"]) == ("True", "Valid")
    # rotating again drops nothing still valid: the newest previous is the last token
    newest = events[-1].obj["data"]["token"]
    link_json(registry, "rx", "ry", "--kubeconfig", cfg, "--rotate-credentials")
    latest = obj(one, "secrets", "meshfed-system", "meshfed-agent-join-ry")
    assert latest["data"]["previous-token"] == newest


def _redeem(reg: Registry, token: str) -> str:
    """An agent start's Join, on the registry's own store."""
    protector = PassphraseProtector.from_file(reg.data_dir / "key.passphrase")

    async def run(store: Store) -> str:
        return await TrustService(store, protector).redeem_join_token(token, datetime.now(UTC))

    result = reg.store(run)
    assert isinstance(result, str)
    return result


def test_link_writes_a_reusable_token_every_agent_restart_joins_with(
    registry: Registry, kubes: dict[str, FakeKube], tmp_path: Path
) -> None:
    add(registry, "ux", "uy")
    one = kubes["one"]
    cfg = kubeconfig(tmp_path / "kubeconfig", {"ux": one, "uy": kubes["two"]})
    link_json(registry, "ux", "uy", "--kubeconfig", cfg)
    secret = obj(one, "secrets", "meshfed-system", "meshfed-agent-join-uy")
    token = base64.b64decode(secret["data"]["token"]).decode()
    for _ in range(3):  # the first start, a restart, a second replica
        assert _redeem(registry, token) == "ux"
    headers = {"Authorization": f"Bearer {registry.token_file.read_text().strip()}"}
    listed = httpx.get(f"{registry.url}/api/v1/clusters/ux/join-tokens", headers=headers).json()
    held = {t["id"]: t for t in listed["items"]}[token.split(".")[0]]
    assert (held["reusable"], held["uses"], held["used"]) == (True, 3, False)

    # rotation: the new token and the previous one (kept beside it) both still join
    link_json(registry, "ux", "uy", "--kubeconfig", cfg, "--rotate-credentials")
    rotated = obj(one, "secrets", "meshfed-system", "meshfed-agent-join-uy")["data"]
    new = base64.b64decode(rotated["token"]).decode()
    assert base64.b64decode(rotated["previous-token"]).decode() == token != new
    assert _redeem(registry, new) == _redeem(registry, new) == _redeem(registry, token) == "ux"

    # rotating again drops the first token from the Secret: it is revoked, not left to
    # join until it expires (reusable); the two the Secret holds still join
    out = link_json(registry, "ux", "uy", "--kubeconfig", cfg, "--rotate-credentials")
    line = next(c for c in out["checks"] if c["name"].startswith("ux: join token"))
    assert "revoked 1 token(s)" in line["detail"], line
    with pytest.raises(InvalidToken):
        _redeem(registry, token)
    latest = obj(one, "secrets", "meshfed-system", "meshfed-agent-join-uy")["data"]
    held = [base64.b64decode(latest[k]).decode() for k in ("token", "previous-token")]
    assert held[1] == new and all(_redeem(registry, t) == "ux" for t in held)

    # unlink deletes the Secret and revokes what it held
    unlinked = registry.ok("unlink", "ux", "uy", "--kubeconfig", cfg)
    assert "revoked the join tokens" in unlinked
    for t in held:
        with pytest.raises(InvalidToken):
            _redeem(registry, t)


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--context-a", "nope"], "'nope'"),
        (["--context-b", "bad context"], "'bad context'"),
        (["--kubeconfig", "/no/such/kubeconfig"], "'/no/such/kubeconfig'"),
        (["--credential-ttl", "48h"], "'48h'"),
        (["--rotate-credentials"], "--rotate-credentials"),
        (["--kubeconfig", "KUBECONFIG"], "'ba'"),  # default context: the cluster's name
    ],
)
def test_bad_kubernetes_arguments_exit_2_naming_the_value(
    registry: Registry, kubes: dict[str, FakeKube], tmp_path: Path, args: list[str], named: str
) -> None:
    cfg = kubeconfig(tmp_path / "kubeconfig", {"aa": kubes["one"], "other": kubes["two"]})
    args = [cfg if a == "KUBECONFIG" else a for a in args]
    if "--context-a" in args or "--context-b" in args:
        args = ["--kubeconfig", cfg, *args]
    result = registry.run("link", "aa", "ba", *args)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert named in result.stderr
    assert not result.stdout


def test_link_grants_the_agent_what_meshfed_install_grants_for_the_registry_ca() -> None:
    """The leader keeps `meshfed-registry-ca` current (discovery_sync.kube.registry_ca);
    tests/install/test_rbac.py checks the install's rules against what the agent
    calls, so a linked agent's Role must carry the same ConfigMap rules."""
    from federation.install.agent import REGISTRY_CA_RULES, _named_rules

    (role,) = [o for o in plan.shared_objects("none", None) if o["kind"] == "Role"]
    configmap_rules = [r for r in role["rules"] if r["resources"] == ["configmaps"]]
    assert configmap_rules == _named_rules(REGISTRY_CA_RULES)
