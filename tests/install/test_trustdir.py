"""`meshfed install --store etcd --trust-dir DIR`: the federation root and etcd's
certificates are made in DIR, rendered as Secrets that `openssl verify` accepts, reused
byte for byte on the next run, and re-issued only when a leaf no longer fits."""

from __future__ import annotations

import base64
import stat
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from federation.install import Options, render, trustdir
from federation.install.trustdir import TrustDirError
from tests.install.test_manifests import VERSIONS, k8s_validate
from trust_bundle.ca import ROOT_LIFETIME, ROOT_PATH_LENGTH

ROOT = Path(__file__).resolve().parents[2]
Obj = dict[str, Any]
LEAF_FILES = ("etcd-server.pem", "etcd-peer.pem", "registry-client.pem")
SERVER_AUTH, CLIENT_AUTH = ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH


def meshfed(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "federation.cli", "install", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    return result


def secrets(objs: list[Obj]) -> dict[str, dict[str, bytes]]:
    return {
        o["metadata"]["name"]: {k: base64.b64decode(v) for k, v in o["data"].items()}
        for o in objs
        if o["kind"] == "Secret"
    }


def rendered(directory: Path, namespace: str = "meshfed-system") -> list[Obj]:
    tls = trustdir.ensure(directory, namespace, datetime.now(UTC))
    return render(Options(("registry",), store="etcd", namespace=namespace), tls)


def openssl_verify(tmp: Path, secret: dict[str, bytes]) -> None:
    """`openssl verify -CAfile root -untrusted intermediate leaf` on a Secret's files."""
    leaf, intermediate = x509.load_pem_x509_certificates(secret["tls.crt"])
    (tmp / "root.pem").write_bytes(secret["ca.crt"])
    (tmp / "leaf.pem").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    (tmp / "inter.pem").write_bytes(intermediate.public_bytes(serialization.Encoding.PEM))
    out = subprocess.run(
        ["openssl", "verify", "-CAfile", "root.pem", "-untrusted", "inter.pem", "leaf.pem"],
        cwd=tmp,
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0 and "leaf.pem: OK" in out.stdout, out.stdout + out.stderr


def san(cert: x509.Certificate) -> tuple[set[str], set[str], set[str]]:
    ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return (
        set(ext.get_values_for_type(x509.DNSName)),
        {str(a) for a in ext.get_values_for_type(x509.IPAddress)},
        set(ext.get_values_for_type(x509.UniformResourceIdentifier)),
    )


def eku(cert: x509.Certificate) -> set[x509.ObjectIdentifier]:
    return set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


def test_secrets_verify_with_openssl_and_carry_the_sans_and_usages(tmp_path: Path) -> None:
    objs = rendered(tmp_path / "trust", "mesh")
    got = secrets(objs)
    assert set(got) == {
        "meshfed-etcd-server-tls",
        "meshfed-etcd-peer-tls",
        "meshfed-etcd-client-tls",
        "meshfed-root-ca",
    }
    for name in ("meshfed-etcd-server-tls", "meshfed-etcd-peer-tls", "meshfed-etcd-client-tls"):
        obj = next(o for o in objs if o["metadata"]["name"] == name)
        assert obj["type"] == "kubernetes.io/tls"
        work = tmp_path / name
        work.mkdir()
        openssl_verify(work, got[name])
        root = x509.load_pem_x509_certificate(got[name]["ca.crt"])
        assert root.subject == root.issuer  # ca.crt is the federation root
    root_secret = got["meshfed-root-ca"]
    assert root_secret["root.pem"] == got["meshfed-etcd-server-tls"]["ca.crt"]
    assert b"PRIVATE KEY" in root_secret["root-key.pem"]

    hosts = {
        "meshfed-etcd-0.meshfed-etcd.mesh.svc",
        "meshfed-etcd-1.meshfed-etcd.mesh.svc",
        "meshfed-etcd-2.meshfed-etcd.mesh.svc",
        "*.meshfed-etcd.mesh.svc",
        "*.meshfed-etcd.mesh.svc.cluster.local",
        "meshfed-etcd.mesh.svc",
        "localhost",
    }
    for name in ("meshfed-etcd-server-tls", "meshfed-etcd-peer-tls"):
        leaf = x509.load_pem_x509_certificates(got[name]["tls.crt"])[0]
        assert san(leaf) == (hosts, {"127.0.0.1"}, set())
        assert eku(leaf) == {SERVER_AUTH, CLIENT_AUTH}  # peers dial and accept each other
        # etcd's only trust anchor for clients and peers: the store CA, under the root
        store_ca = x509.load_pem_x509_certificate(got[name]["store-ca.crt"])
        assert store_ca == x509.load_pem_x509_certificates(got[name]["tls.crt"])[1]
    client = x509.load_pem_x509_certificates(got["meshfed-etcd-client-tls"]["tls.crt"])[0]
    assert eku(client) == {CLIENT_AUTH}
    assert client.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == (
        "meshfed-registry"
    )
    assert san(client)[2] == {"spiffe://store.meshfed.local/meshfed/registry"}

    # The root has the registry's own root shape (trust_bundle.ca.create_root_ca).
    root = x509.load_pem_x509_certificate(root_secret["root.pem"])
    bc = root.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca and bc.value.path_length == ROOT_PATH_LENGTH
    assert root.not_valid_after_utc - root.not_valid_before_utc == ROOT_LIFETIME + timedelta(
        minutes=5
    )
    key = root.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1"


def test_the_registry_mounts_the_root_and_etcd_trusts_only_the_store_ca(tmp_path: Path) -> None:
    objs = rendered(tmp_path / "trust")
    dep = next(o for o in objs if o["kind"] == "Deployment")
    spec = dep["spec"]["template"]["spec"]
    assert "--root-ca=/etc/meshfed/root-ca" in spec["containers"][0]["args"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["root-ca"]["secret"] == {"secretName": "meshfed-root-ca", "defaultMode": 0o440}
    sts = next(o for o in objs if o["kind"] == "StatefulSet")
    cmd = sts["spec"]["template"]["spec"]["containers"][0]["command"]
    assert "--trusted-ca-file=/etc/etcd/tls/server/store-ca.crt" in cmd
    assert "--peer-trusted-ca-file=/etc/etcd/tls/peer/store-ca.crt" in cmd
    # Secrets come first: the pods that mount them are applied after
    kinds = [o["kind"] for o in objs]
    assert kinds.index("Secret") < kinds.index("StatefulSet") < kinds.index("Deployment")
    for version in VERSIONS:
        for o in objs:
            k8s_validate(o, version)


def test_directory_and_key_modes(tmp_path: Path) -> None:
    directory = tmp_path / "a" / "trust"
    trustdir.ensure(directory, "meshfed-system", datetime.now(UTC))
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    keys = sorted(p.name for p in directory.iterdir() if p.name.endswith("-key.pem"))
    assert keys == [
        "etcd-peer-key.pem",
        "etcd-server-key.pem",
        "registry-client-key.pem",
        "root-key.pem",
        "store-ca-key.pem",
    ]
    for name in keys:
        assert stat.S_IMODE((directory / name).stat().st_mode) == 0o600, name
    # a key readable by others is refused, naming it
    (directory / "etcd-peer-key.pem").chmod(0o644)
    with pytest.raises(TrustDirError, match=r"etcd-peer-key\.pem"):
        trustdir.ensure(directory, "meshfed-system", datetime.now(UTC))


def test_rerun_is_byte_identical_and_another_namespace_reissues_the_leaves(tmp_path: Path) -> None:
    directory = tmp_path / "trust"
    first = rendered(directory)
    files = {p.name: p.read_bytes() for p in directory.iterdir()}
    again = rendered(directory)
    assert again == first
    assert {p.name: p.read_bytes() for p in directory.iterdir()} == files

    other = secrets(rendered(directory, "mesh"))
    before = secrets(first)
    for name in ("meshfed-etcd-server-tls", "meshfed-etcd-peer-tls"):
        assert other[name]["tls.crt"] != before[name]["tls.crt"]
        assert other[name]["tls.key"] != before[name]["tls.key"]
        leaf = x509.load_pem_x509_certificates(other[name]["tls.crt"])[0]
        assert "meshfed-etcd-0.meshfed-etcd.mesh.svc" in san(leaf)[0]
    # the root, the store CA and the namespace-free client certificate stay
    assert other["meshfed-root-ca"] == before["meshfed-root-ca"]
    assert other["meshfed-etcd-client-tls"] == before["meshfed-etcd-client-tls"]
    assert (
        other["meshfed-etcd-server-tls"]["store-ca.crt"]
        == (before["meshfed-etcd-server-tls"]["store-ca.crt"])
    )


def test_leaves_past_two_thirds_of_their_lifetime_are_reissued(tmp_path: Path) -> None:
    directory = tmp_path / "trust"
    now = datetime.now(UTC)
    trustdir.ensure(directory, "meshfed-system", now)
    files = {p.name: p.read_bytes() for p in directory.iterdir()}
    notes: list[str] = []
    trustdir.ensure(directory, "meshfed-system", now + timedelta(days=200), notes.append)
    assert notes == []  # 200 of 365 days: not yet
    trustdir.ensure(directory, "meshfed-system", now + timedelta(days=250), notes.append)
    changed = {p.name for p in directory.iterdir() if p.read_bytes() != files[p.name]}
    assert changed == {f"{stem}{suffix}" for stem in ("etcd-server", "etcd-peer", "registry-client")
                       for suffix in (".pem", "-key.pem")}  # fmt: skip
    assert len(notes) == 3 and all("past 2/3" in n for n in notes), notes
    assert not any("PRIVATE" in n for n in notes)


def test_cli_writes_the_certificates_only_for_etcd_and_names_an_unwritable_path(
    tmp_path: Path,
) -> None:
    # --store postgres: the admin token only (tests/install/test_admin_token.py), no
    # certificates; without the registry --trust-dir is refused as meaningless
    pg = meshfed(tmp_path, "--component", "registry", "--store", "postgres")
    assert pg.returncode == 0, pg.stderr
    pg_secrets = [d["metadata"]["name"] for d in yaml.safe_load_all(pg.stdout)
                  if d and d["kind"] == "Secret"]  # fmt: skip
    assert pg_secrets == ["meshfed-admin-token"]
    assert [p.name for p in (tmp_path / "meshfed-trust").iterdir()] == ["admin.token"]
    wrong = meshfed(
        tmp_path, "--component", "agent", "--cluster", "east", "--registry-url", "r:9471",
        "--trust-dir", "x",
    )  # fmt: skip
    assert wrong.returncode == 2 and "--trust-dir" in wrong.stderr
    assert not (tmp_path / "x").exists()
    # the default directory, relative to where install runs
    out = meshfed(tmp_path, "--component", "registry")
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "meshfed-trust" / "root.pem").is_file()
    assert "PRIVATE KEY" not in out.stderr
    again = meshfed(tmp_path, "--component", "registry")
    assert again.stdout == out.stdout and again.stderr == ""
    assert [d for d in yaml.safe_load_all(out.stdout) if d]
    # unwritable: a path below a regular file (refused even for root)
    (tmp_path / "file").write_text("")
    bad = tmp_path / "file" / "trust"
    result = meshfed(tmp_path, "--component", "registry", "--trust-dir", str(bad))
    assert result.returncode == 2, result.stdout + result.stderr
    assert str(bad) in result.stderr and result.stdout == ""
