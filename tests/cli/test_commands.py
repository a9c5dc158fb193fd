"""The `meshfed` client commands through the real entry point against a real registry.

Tests in this module share one `meshfed serve` and run in file order; each uses its
own cluster names so it does not depend on another's leftovers, except where noted.
"""

from __future__ import annotations

import dataclasses
import json
import stat
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509

from federation.model import Condition, Gateway, Port, ServiceExport
from tests.cli.conftest import Registry

PASS, FAIL, WARN = "\u221a", "\u00d7", "\u203c"


def add(reg: Registry, name: str, *extra: str) -> str:
    return reg.ok("cluster", "add", name, "--region", "us-east", "--zone", "zone-a", *extra)


# -- clusters -----------------------------------------------------------------------------


def test_cluster_add_prints_a_join_token_and_list_show_in_every_format(registry: Registry) -> None:
    out = add(registry, "east", "--gateway-address", "127.0.0.1:15443", "--label", "env=prod")
    assert 'cluster "east" registered' in out
    token_line = out.splitlines()[
        out.splitlines().index(next(ln for ln in out.splitlines() if ln.startswith("join token")))
        + 1
    ].strip()
    assert "." in token_line and len(token_line) > 20  # `<id>.<secret>`
    token_file = registry.home / "west.join"
    out = registry.ok(
        "cluster",
        "add",
        "west",
        "--region",
        "eu-west",
        "--zone",
        "zone-b",
        "--trust-domain",
        "west.example",
        "--join-token-file",
        str(token_file),
        "-o",
        "json",
    )
    added = json.loads(out)
    assert added["cluster"]["trust_domain"] == "west.example"
    assert added["join_token"]["token"] is None  # written to the file, not printed
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert token_file.read_text().strip().count(".") == 1

    listed = json.loads(registry.ok("cluster", "list", "-o", "json"))["items"]
    assert {c["name"] for c in listed} >= {"east", "west"}
    as_yaml = yaml.safe_load(registry.ok("cluster", "list", "-o", "yaml"))["items"]
    assert [c["name"] for c in as_yaml] == [c["name"] for c in listed]
    table = registry.ok("cluster", "list").splitlines()
    assert table[0].split() == [
        "NAME",
        "REGION",
        "ZONE",
        "NETWORK",
        "TRUST_DOMAIN",
        "SOURCE",
        "GATEWAY_ADDRESSES",
    ]
    assert any(ln.split()[:3] == ["east", "us-east", "zone-a"] for ln in table[1:])

    shown = json.loads(registry.ok("cluster", "show", "east", "-o", "json"))
    assert shown["gateway_addresses"] == ["127.0.0.1:15443"]
    assert shown["labels"] == {"env": "prod"}
    assert shown["trust_domain"] == "east.local"  # the default: NAME.local
    assert yaml.safe_load(registry.ok("cluster", "show", "east", "-o", "yaml"))["name"] == "east"
    assert "trust_domain:       east.local" in registry.ok("cluster", "show", "east")


def test_cluster_remove_and_ignore_not_found(registry: Registry) -> None:
    add(registry, "doomed")
    assert 'cluster "doomed" removed' in registry.ok("cluster", "remove", "doomed")
    gone = registry.run("cluster", "show", "doomed")
    assert gone.returncode == 1
    assert gone.stderr.strip() == 'error: 404 Not Found: cluster "doomed" not found'
    again = registry.run("cluster", "remove", "doomed")
    assert again.returncode == 1 and "404 Not Found" in again.stderr
    assert "nothing to do" in registry.ok("cluster", "remove", "doomed", "--ignore-not-found")


def test_api_errors_are_one_clean_line_with_exit_1(registry: Registry) -> None:
    add(registry, "dup")
    result = registry.run("cluster", "add", "dup", "--region", "r", "--zone", "z")
    assert result.returncode == 1
    assert result.stderr == 'error: 409 Conflict: cluster "dup" already exists\n'
    assert result.stdout == ""

    bad_token = registry.home / "bad.token"
    bad_token.write_text("nobody.secret\n")
    result = registry.run("cluster", "list", env=registry.env(MESHFED_TOKEN_FILE=str(bad_token)))
    assert result.returncode == 1
    assert result.stderr.startswith("error: 401 Unauthorized: ")
    assert len(result.stderr.splitlines()) == 1

    dead = registry.run("cluster", "list", "--registry", "http://127.0.0.1:1")
    assert dead.returncode == 1
    assert dead.stderr.startswith("error: registry http://127.0.0.1:1 unreachable")


def test_bad_arguments_exit_2_naming_the_value(registry: Registry) -> None:
    for args, named in [
        (("cluster", "add", "East", "--region", "r", "--zone", "z"), "'East'"),
        (
            ("cluster", "add", "ok", "--region", "r", "--zone", "z", "--gateway-address", "nope"),
            "'nope'",
        ),
        (
            (
                "cluster",
                "add",
                "ok",
                "--region",
                "r",
                "--zone",
                "z",
                "--trust-domain",
                "Bad Domain",
            ),
            "'Bad Domain'",
        ),
        (("cluster", "show", "no_underscores"), "'no_underscores'"),
        (("link", "east", "west", "--mode", "tunnel"), "'tunnel'"),
        (("link", "east", "west", "--namespaces", "shop,Bad"), "'Bad'"),
        (("link", "east", "west", "--mesh", "consul"), "'consul'"),
        (("cluster", "list", "-o", "xml"), "'xml'"),
        (("cluster", "list", "--registry", "ftp://x"), "'ftp://x'"),
        (("trust", "export", "--cluster", "east", "--format", "jks", "--out", "d"), "'jks'"),
        (("check", "--expiry-days", "soon"), "'soon'"),
        (("config", "use-context", "bad name"), "'bad name'"),
    ]:
        result = registry.run(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert named in result.stderr, (args, result.stderr)


# -- link / unlink ------------------------------------------------------------------------


def test_link_twice_is_a_no_op_and_unlink_removes_it(registry: Registry) -> None:
    add(registry, "la", "--trust-domain", "la.example")
    add(registry, "lb", "--trust-domain", "lb.example")
    first = registry.run("link", "la", "lb", "--namespaces", "shop,web")
    assert first.returncode == 0, first.stdout + first.stderr
    lines = first.stdout.splitlines()
    assert f"{PASS} cluster la registered (us-east/zone-a, trust domain la.example)" in lines
    assert f"{PASS} lb (lb.example) trusts la's intermediate" in lines
    assert any(
        ln.startswith(f"{PASS} intermediate CA of lb chains to the served bundle") for ln in lines
    )
    assert any(ln.startswith(f"{PASS} link recorded (created,") for ln in lines)
    assert any(
        ln.startswith(f"{WARN} la<->lb: gateways reachable (GatewayReachable Unknown")
        for ln in lines
    )
    assert lines[-1] == f"Status check results are {PASS}"
    record = json.loads(registry.ok("status", "-o", "json"))
    before = next(lk for lk in record["links"] if lk["a"] == "la")

    second = registry.run("link", "lb", "la", "--namespaces", "web,shop", "-o", "json")
    assert second.returncode == 0, second.stdout + second.stderr
    summary = json.loads(second.stdout)
    assert summary["ok"] is True
    recorded = next(c for c in summary["checks"] if c["name"] == "link recorded")
    assert recorded["detail"].startswith("unchanged")
    after = next(
        lk for lk in json.loads(registry.ok("status", "-o", "json"))["links"] if lk["a"] == "la"
    )
    assert after["revision"] == before["revision"]  # nothing written

    different = registry.run("link", "la", "lb", "--mode", "passthrough")
    assert different.returncode == 1
    assert f"{FAIL} link recorded (a different link exists (its mode is terminating" in (
        different.stdout
    )

    assert "removed" in registry.ok("unlink", "lb", "la")
    assert "(unchanged)" in registry.ok("unlink", "la", "lb")
    links = json.loads(registry.ok("status", "-o", "json"))["links"]
    assert not [lk for lk in links if "la" in (lk["a"], lk["b"])]


def test_link_of_an_unregistered_cluster_fails(registry: Registry) -> None:
    add(registry, "lonely")
    result = registry.run("link", "lonely", "ghost")
    assert result.returncode == 1
    assert f"{FAIL} cluster ghost registered (not found; register it with" in result.stdout


def test_one_way_link_and_mesh_warning(registry: Registry) -> None:
    add(registry, "ow-a")
    add(registry, "ow-b")
    result = registry.run("link", "ow-a", "ow-b", "--one-way", "--mesh", "istio", "-o", "yaml")
    assert result.returncode == 0, result.stdout + result.stderr
    data = yaml.safe_load(result.stdout)
    assert data["link"]["bidirectional"] is False
    mesh = next(c for c in data["checks"] if "istio" in c["name"])
    assert mesh["status"] == "warn"
    reverse = registry.run("link", "ow-b", "ow-a", "--one-way")
    assert reverse.returncode == 1 and "the other way round" in reverse.stdout
    registry.ok("unlink", "ow-a", "ow-b")


# -- check, status, services, gateways ------------------------------------------------------


def test_check_passes_on_a_healthy_federation(registry: Registry) -> None:
    add(registry, "ca", "--trust-domain", "ca.example")
    add(registry, "cb", "--trust-domain", "cb.example")
    registry.ok("link", "ca", "cb")
    result = registry.run("check")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert any(ln.startswith(f"{PASS} registry reachable") for ln in lines)
    assert any(ln.startswith(f"{PASS} store healthy (revision ") for ln in lines)
    assert any(
        ln.startswith(f"{PASS} intermediate CA of ca chains to the served bundle (expires in 36")
        for ln in lines
    )
    assert f"{PASS} no export conflicts (0 services)" in lines
    assert lines[-1] == f"Status check results are {PASS}"
    as_json = json.loads(registry.ok("check", "-o", "json"))
    assert as_json["ok"] is True
    assert {c["section"] for c in as_json["checks"]} >= {"registry", "trust", "links", "exports"}


def test_check_fails_with_exit_1_on_failed_probes_and_export_conflicts(registry: Registry) -> None:
    # What the gateways' and agents' gRPC reports would write: a failed probe, an
    # unhealthy gateway, and two exports disagreeing about a port.
    now = datetime.now(UTC)

    async def break_things(store: Any) -> None:
        link = await store.links.get("ca/cb")
        conds = tuple(
            Condition(c.type, "False", "ProbeFailed", "cb -> ca: connection refused", now)
            if c.type in ("GatewayReachable", "Ready")
            else c
            for c in link.record.conditions
        )
        await store.links.update(dataclasses.replace(link.record, conditions=conds), link.revision)
        await store.gateways.put(Gateway("cb", ("127.0.0.1:15443",), healthy=False))
        await store.gateways.put(Gateway("ca", ("127.0.0.1:15444",), healthy=True))
        for cluster, name in (("ca", "http"), ("cb", "web")):
            await store.exports.put(
                ServiceExport(cluster, "shop", "cart", now, (Port(80, "TCP", name),))
            )

    registry.store(break_things)
    result = registry.run("check")
    assert result.returncode == 1, result.stdout
    lines = result.stdout.splitlines()
    assert (
        f"{FAIL} ca<->cb: gateways reachable both ways (ProbeFailed: cb -> ca: connection refused)"
    ) in lines
    assert f"{FAIL} gateway of cb alive (peers report it unhealthy)" in lines
    assert f"{PASS} gateway of ca alive (127.0.0.1:15444)" in lines
    assert any(
        ln.startswith(f"{FAIL} export shop/cart without conflicts (port 80/TCP") for ln in lines
    )
    assert lines[-1] == f"Status check results are {FAIL}"
    as_json = json.loads(registry.run("check", "-o", "json").stdout)
    assert as_json["ok"] is False

    status = registry.ok("status").splitlines()
    row = next(ln for ln in status if ln.startswith("ca<->cb"))
    assert row.split()[:6] == ["ca<->cb", "terminating", "*", "False", "False", "Unknown"]

    services = json.loads(registry.ok("services", "--cluster", "cb", "-o", "json"))["items"]
    assert [(s["namespace"], s["name"]) for s in services] == [("shop", "cart")]
    assert services[0]["conflicts"]
    table = registry.ok("services").splitlines()
    assert table[0].split()[:4] == ["NAMESPACE", "NAME", "CLUSTERS", "PORTS"]
    unknown = registry.run("services", "--cluster", "nosuch")
    assert unknown.returncode == 1 and 'cluster "nosuch" not found' in unknown.stderr

    gws = json.loads(registry.ok("gateways", "-o", "json"))["items"]
    by = {g["cluster"]: g for g in gws}
    assert by["cb"]["alive"] == "False" and by["ca"]["alive"] == "True"
    assert by["ca"]["num_svc"] == 1
    gtable = registry.ok("gateways").splitlines()
    assert gtable[0].split() == ["CLUSTER", "ALIVE", "NUM_SVC", "ADDRESSES", "MODES"]

    # Reading the link shows the failure too (and link does not "fix" recorded conditions).
    relink = registry.run("link", "ca", "cb")
    assert relink.returncode == 1
    assert "unchanged" in relink.stdout

    async def repair(store: Any) -> None:
        for key in ("shop/cart/ca", "shop/cart/cb"):
            await store.exports.delete(key)
        for name in ("ca", "cb"):
            await store.gateways.delete(name)
        link = await store.links.get("ca/cb")
        await store.links.update(dataclasses.replace(link.record, conditions=()), link.revision)

    registry.store(repair)


def test_check_fails_when_the_registry_is_unreachable(registry: Registry) -> None:
    result = registry.run("check", "--registry", "http://127.0.0.1:1")
    assert result.returncode == 1
    assert result.stdout.splitlines()[2].startswith(
        f"{FAIL} registry reachable (registry http://127.0.0.1:1 unreachable"
    )


# -- trust export ---------------------------------------------------------------------------


def test_trust_export_writes_the_expected_files_with_modes(
    registry: Registry, tmp_path: Path
) -> None:
    add(registry, "tx", "--trust-domain", "tx.example")
    expected = {
        "istio": {
            "ca-cert.pem": 0o644,
            "ca-key.pem": 0o600,
            "root-cert.pem": 0o644,
            "cert-chain.pem": 0o644,
        },
        "linkerd": {"ca.crt": 0o644, "issuer.crt": 0o644, "issuer.key": 0o600},
        "spiffe": {"bundle.json": 0o644, "federated-bundles.json": 0o644},
        "pem": {"bundle.pem": 0o644},
    }
    for fmt, files in expected.items():
        out = tmp_path / fmt
        registry.ok("trust", "export", "--cluster", "tx", "--format", fmt, "--out", str(out))
        assert stat.S_IMODE(out.stat().st_mode) == 0o700
        assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in out.iterdir()} == files
    roots = x509.load_pem_x509_certificates((tmp_path / "pem" / "bundle.pem").read_bytes())
    inter = x509.load_pem_x509_certificate((tmp_path / "istio" / "ca-cert.pem").read_bytes())
    assert inter.issuer in {r.subject for r in roots}
    bundle = json.loads((tmp_path / "spiffe" / "bundle.json").read_text())
    assert bundle["keys"][0]["use"] == "x509-svid"
    federated = json.loads((tmp_path / "spiffe" / "federated-bundles.json").read_text())
    assert "spiffe://tx.example" not in federated
    again = registry.ok(
        "trust",
        "export",
        "--cluster",
        "tx",
        "--format",
        "istio",
        "-o",
        "json",
        "--out",
        str(tmp_path / "again"),
    )
    assert {f["secret"] for f in json.loads(again)["files"]} == {True, False}
    missing = registry.run(
        "trust", "export", "--cluster", "nosuch", "--format", "pem", "--out", str(tmp_path / "x")
    )
    assert missing.returncode == 1 and 'cluster "nosuch" not found' in missing.stderr


def test_ca_exports_need_an_admin_and_check_says_so(registry: Registry) -> None:
    import httpx

    admin = registry.token_file.read_text().strip()
    r = httpx.post(
        f"{registry.url}/api/v1/tokens",
        json={"name": "cli-viewer", "role": "viewer"},
        headers={"Authorization": f"Bearer {admin}"},
    )
    assert r.status_code == 201, r.text
    viewer_file = registry.home / "viewer.token"
    viewer_file.write_text(r.json()["token"])
    env = registry.env(MESHFED_TOKEN_FILE=str(viewer_file))
    denied = registry.run(
        "trust",
        "export",
        "--cluster",
        "tx",
        "--format",
        "istio",
        "--out",
        str(registry.home / "denied"),
        env=env,
    )
    assert denied.returncode == 1 and denied.stderr.startswith("error: 403 Forbidden: ")
    check = registry.run("check", env=env)
    assert check.returncode == 0, check.stdout
    assert f"{WARN} intermediate CA of tx (not verified:" in check.stdout


# -- contexts --------------------------------------------------------------------------------


def test_contexts_select_registry_and_token(registry: Registry) -> None:
    env = registry.env(MESHFED_REGISTRY="", MESHFED_TOKEN_FILE="")
    cfg = registry.home / ".config" / "meshfed" / "config.yaml"

    none = registry.run("cluster", "list", env=env)  # default 127.0.0.1:9470 is not running here
    assert none.returncode == 1 and none.stderr.startswith("error: ")

    out = registry.run(
        "config",
        "set-context",
        "lab",
        "--registry",
        registry.url,
        "--token-file",
        str(registry.token_file),
        env=env,
    )
    assert out.returncode == 0 and f"in {cfg}" in out.stdout
    assert stat.S_IMODE(cfg.stat().st_mode) == 0o600
    assert registry.token_file.read_text().strip() not in cfg.read_text()  # paths, not tokens
    assert registry.run("config", "current-context", env=env).stdout == "lab\n"  # first is current
    assert registry.run("cluster", "list", env=env).returncode == 0

    registry.run("config", "set-context", "broken", "--registry", "http://127.0.0.1:1", env=env)
    assert registry.run("config", "use-context", "broken", env=env).returncode == 0
    assert registry.run("cluster", "list", env=env).returncode == 1
    assert registry.run("cluster", "list", "--context", "lab", env=env).returncode == 0
    assert registry.run("--context", "lab", "cluster", "list", env=env).returncode == 0
    flags = registry.run(
        "cluster",
        "list",
        "--registry",
        registry.url,
        "--token-file",
        str(registry.token_file),
        env=env,
    )
    assert flags.returncode == 0  # flags beat the current context

    listed = yaml.safe_load(registry.run("config", "get-contexts", "-o", "yaml", env=env).stdout)
    assert listed["current-context"] == "broken"
    assert [c["name"] for c in listed["contexts"]] == ["lab", "broken"]
    unknown = registry.run("cluster", "list", "--context", "nope", env=env)
    assert unknown.returncode == 1
    assert unknown.stderr.startswith('error: context "nope" is not in ')
    assert registry.run("config", "use-context", "nope", env=env).returncode == 1
    assert registry.run("config", "delete-context", "broken", env=env).returncode == 0
