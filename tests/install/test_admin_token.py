"""`meshfed install --component registry`: the admin token is generated once into the
trust directory (0600), rendered as the Secret `meshfed-admin-token` that the registry
mounts for `meshfed serve --admin-token-file`, byte-identical on every re-run and for
every store; `--registry-external-name` puts the load balancer's names into the
control plane's certificate (`--server-name`)."""

from __future__ import annotations

import base64
import hashlib
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from federation.cli import build_parser
from federation.install import Options, admin_token, render
from federation.install.registry import ADMIN_TOKEN_CHECKSUM
from federation.install.trustdir import TrustDirError
from federation.registry.auth import parse_bearer
from tests.install.conftest import STORES
from tests.install.test_manifests import VERSIONS, k8s_validate

ROOT = Path(__file__).resolve().parents[2]
Obj = dict[str, Any]
TOKEN = b"install-admin." + b"A" * 43 + b"\n"


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


def registry_pod(objs: list[Obj]) -> Obj:
    dep = next(
        o for o in objs if o["kind"] == "Deployment" and o["metadata"]["name"] == "meshfed-registry"
    )
    tpl: Obj = dep["spec"]["template"]
    return tpl


def docs(text: str) -> list[Obj]:
    return [d for d in yaml.safe_load_all(text) if d]


@pytest.mark.parametrize("store", STORES)
def test_the_secret_is_mounted_for_admin_token_file_and_validates(store: str) -> None:
    objs = render(Options(("registry",), store=store), None, TOKEN)
    secret = next(
        o for o in objs if o["kind"] == "Secret" and o["metadata"]["name"] == "meshfed-admin-token"
    )
    assert secret["metadata"]["namespace"] == "meshfed-system"
    assert secret["type"] == "Opaque"
    assert base64.b64decode(secret["data"]["token"]) == TOKEN
    pod = registry_pod(objs)
    spec = pod["spec"]
    c = spec["containers"][0]
    assert "--admin-token-file=/etc/meshfed/admin-token/token" in c["args"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["admin-token"]["secret"] == {
        "secretName": "meshfed-admin-token",
        "defaultMode": 0o440,
    }
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    assert mounts["admin-token"] == {
        "name": "admin-token",
        "mountPath": "/etc/meshfed/admin-token",
        "readOnly": True,
    }
    # a rotated token changes the pod template, so the replicas roll and store it
    annotations = pod["metadata"]["annotations"]
    assert annotations[ADMIN_TOKEN_CHECKSUM] == hashlib.sha256(TOKEN).hexdigest()
    assert "prometheus.io/scrape" in annotations
    kinds = [o["kind"] for o in objs]
    assert kinds.index("Secret") < kinds.index("Deployment")  # mounted after it exists
    for version in VERSIONS:
        for o in objs:
            k8s_validate(o, version)
    # the rendered args are ones `meshfed serve` takes
    parsed = build_parser().parse_args(
        c["args"][:1] + [a for a in c["args"][1:] if "admin-token" not in a]
    )
    assert parsed.server_name[:2] == [
        "meshfed-registry.meshfed-system.svc",
        "meshfed-registry.meshfed-system.svc.cluster.local",
    ]


def test_without_the_token_the_registry_keeps_its_data_dir_token() -> None:
    objs = render(Options(("registry",), store="postgres"))
    assert not [o for o in objs if o["kind"] == "Secret"]
    pod = registry_pod(objs)
    assert not any("admin-token" in a for a in pod["spec"]["containers"][0]["args"])
    assert ADMIN_TOKEN_CHECKSUM not in pod["metadata"]["annotations"]


def test_the_token_file_is_0600_reused_and_parses_as_the_registry_reads_it(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "a" / "trust"
    notes: list[str] = []
    first = admin_token.ensure(directory, notes.append)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    path = directory / admin_token.FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes() == first and first.endswith(b"\n")
    bearer = parse_bearer(first.decode())
    assert bearer.name == "install-admin" and len(bearer.secret) == 43
    assert bearer.secret not in repr(bearer) and bearer.secret not in " ".join(notes)
    assert notes == [f"created the admin token install-admin in {path}"]
    assert admin_token.ensure(directory, notes.append) == first
    assert len(notes) == 1  # nothing changed
    assert admin_token.ensure(tmp_path / "other") != first  # each install its own

    # a token of your own in that shape is used as it is (whitespace normalized)
    own = "ops-admin." + "z" * 40
    path.write_text(f"  {own}  \n\n")
    assert admin_token.ensure(directory) == f"{own}\n".encode()

    path.chmod(0o644)
    with pytest.raises(TrustDirError, match=r"admin\.token: mode 644"):
        admin_token.ensure(directory)
    path.chmod(0o600)
    path.write_text("garbage")
    with pytest.raises(TrustDirError, match=r"admin\.token: does not hold one API token") as err:
        admin_token.ensure(directory)
    assert "garbage" not in str(err.value)


@pytest.mark.parametrize("store", ["etcd", "postgres"])
def test_cli_renders_it_for_every_store_and_rerenders_byte_identically(
    tmp_path: Path, store: str
) -> None:
    argv = ["--component", "registry", "--store", store]
    out = meshfed(tmp_path, *argv)
    assert out.returncode == 0, out.stderr
    token = (tmp_path / "meshfed-trust" / "admin.token").read_bytes()
    assert token.decode().strip() not in out.stderr
    assert "created the admin token install-admin" in out.stderr
    secret = next(d for d in docs(out.stdout) if d["metadata"]["name"] == "meshfed-admin-token")
    assert base64.b64decode(secret["data"]["token"]) == token
    again = meshfed(tmp_path, *argv)
    assert again.returncode == 0 and again.stdout == out.stdout and again.stderr == ""
    # --trust-dir works with every store now
    other = meshfed(tmp_path, *argv, "--trust-dir", "elsewhere", "-o", "json")
    assert other.returncode == 0, other.stderr
    assert (tmp_path / "elsewhere" / "admin.token").read_bytes() != token


def test_cli_refuses_a_bad_token_file_naming_it(tmp_path: Path) -> None:
    trust = tmp_path / "trust"
    trust.mkdir(mode=0o700)
    (trust / "admin.token").write_text("not a token\n")
    (trust / "admin.token").chmod(0o600)
    result = meshfed(tmp_path, "--component", "registry", "--store", "postgres",
                     "--trust-dir", str(trust))  # fmt: skip
    assert result.returncode == 2 and result.stdout == ""
    assert f"--trust-dir: {trust / 'admin.token'}: does not hold" in result.stderr
    assert "not a token" not in result.stderr


def test_external_names_become_server_names(tmp_path: Path) -> None:
    out = meshfed(
        tmp_path,
        "--component", "all", "--cluster", "east", "--store", "postgres",
        "--registry-external-name", "Registry.Example.COM",
        "--registry-external-name", "203.0.113.9",
        "--registry-external-name", "2001:DB8::0:1",
        "--registry-external-name", "registry.example.com",
        "--registry-external-name", "meshfed-registry.meshfed-system.svc",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    pod = registry_pod(docs(out.stdout))
    names = [a.split("=", 1)[1] for a in pod["spec"]["containers"][0]["args"]
             if a.startswith("--server-name=")]  # fmt: skip
    assert names == [
        "meshfed-registry.meshfed-system.svc",
        "meshfed-registry.meshfed-system.svc.cluster.local",
        "registry.example.com",
        "203.0.113.9",
        "2001:db8::1",
    ]
    # without the flag: the in-cluster names only (unchanged)
    plain = registry_pod(render(Options(("registry",), store="postgres")))
    assert [a for a in plain["spec"]["containers"][0]["args"] if "server-name" in a] == [
        "--server-name=meshfed-registry.meshfed-system.svc",
        "--server-name=meshfed-registry.meshfed-system.svc.cluster.local",
    ]


BAD = [
    (["--component", "registry", "--registry-external-name", "bad_name"], "'bad_name'"),
    (["--component", "registry", "--registry-external-name", "lb.example.com:9471"],
     "'lb.example.com:9471'"),
    (["--component", "registry", "--registry-external-name", "https://lb.example.com"],
     "'https://lb.example.com'"),
    (["--component", "registry", "--registry-external-name", ""], "''"),
    (["--component", "registry", "--registry-external-name=-a.example.com"],
     "'-a.example.com'"),
    (["--component", "registry", "--registry-external-name", "fe80::1%eth0"], "'fe80::1%eth0'"),
    (["--component", "agent", "--cluster", "east", "--registry-url", "r:9471",
      "--registry-external-name", "lb.example.com"], "--registry-external-name"),
    (["--component", "gateway", "--cluster", "east", "--registry-url", "r:9471",
      "--trust-dir", "x"], "--trust-dir"),
]  # fmt: skip


@pytest.mark.parametrize(("args", "named"), BAD, ids=[a[-1] or "empty" for a, _ in BAD])
def test_bad_values_exit_2_naming_them(tmp_path: Path, args: list[str], named: str) -> None:
    result = meshfed(tmp_path, *args)
    assert result.returncode == 2, result.stdout + result.stderr
    assert named in result.stderr, result.stderr
    assert result.stdout == ""
    assert list(tmp_path.iterdir()) == []  # nothing generated
