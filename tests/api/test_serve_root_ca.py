"""`meshfed serve --root-ca DIR` as a real process: the root `meshfed install --store
etcd` made is adopted on first start (the bundles serve it), kept on a restart, and a
store holding another root makes serve refuse to start, naming both fingerprints."""

from __future__ import annotations

import base64
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from federation.install import trustdir
from tests.servers.serve import spawn_serve, stop_serve, wait_serve_ready
from trust_bundle.spiffe_bundle import certificate_fingerprint

ROOT = Path(__file__).resolve().parents[2]


def serve(data_dir: Path, root_ca: Path) -> tuple[subprocess.Popen[str], str]:
    return spawn_serve(data_dir, "--root-ca", str(root_ca))


def served_root(base: str) -> x509.Certificate:
    bundles = httpx.get(f"{base}/api/v1/trust/bundles", timeout=10).json()
    keys = bundles["spiffe://meshfed.local"]["keys"]
    assert len(keys) == 1
    return x509.load_der_x509_certificate(base64.b64decode(keys[0]["x5c"][0]))


def test_serve_adopts_the_install_root_keeps_it_and_refuses_another(tmp_path: Path) -> None:
    trust = tmp_path / "trust"
    trustdir.ensure(trust, "meshfed-system", datetime.now(UTC))
    root = x509.load_pem_x509_certificate((trust / "root.pem").read_bytes())
    fingerprint = certificate_fingerprint(root)
    data = tmp_path / "data"

    proc, base = serve(data, trust)
    try:
        wait_serve_ready(proc, base)
        assert served_root(base) == root
        # the registry CA (which signs the control plane's certificate) is under it
        roots_pem = httpx.get(f"{base}/api/v1/trust/roots.pem", timeout=10).content
        assert roots_pem == root.public_bytes(serialization.Encoding.PEM)
    finally:
        out = stop_serve(proc)
    assert f"federation root {fingerprint}: imported (--root-ca)" in out
    assert "PRIVATE KEY" not in out

    proc, base = serve(data, trust)  # a restart (another replica): nothing to do
    try:
        wait_serve_ready(proc, base)
        assert served_root(base) == root
    finally:
        out = stop_serve(proc)
    assert f"federation root {fingerprint}: unchanged (--root-ca)" in out

    other = tmp_path / "other"
    trustdir.ensure(other, "meshfed-system", datetime.now(UTC))
    other_fp = certificate_fingerprint(
        x509.load_pem_x509_certificate((other / "root.pem").read_bytes())
    )
    proc, _ = serve(data, other)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 1, out
    assert fingerprint in out and other_fp in out and "refusing to replace" in out, out
    assert "PRIVATE KEY" not in out and "Traceback" not in out


def test_serve_refuses_a_root_ca_dir_that_holds_no_usable_root(tmp_path: Path) -> None:
    trust = tmp_path / "trust"
    trustdir.ensure(trust, "meshfed-system", datetime.now(UTC))
    bad = tmp_path / "bad"
    bad.mkdir()
    # a leaf is no root: the etcd server certificate with its own key
    (bad / "root.pem").write_bytes((trust / "etcd-server.pem").read_bytes())
    (bad / "root-key.pem").write_bytes((trust / "etcd-server-key.pem").read_bytes())
    proc, _ = serve(tmp_path / "data", bad)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 1, out
    assert f"{bad / 'root.pem'} is not a usable federation root" in out, out
    assert not (tmp_path / "data" / "registry.db").exists()  # refused before the store
    missing = tmp_path / "missing"
    proc, _ = serve(tmp_path / "data", missing)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 1 and str(missing / "root.pem") in out, out


def test_serve_with_the_install_root_still_starts_after_a_rotation(tmp_path: Path) -> None:
    """A registry pod restarted from the install's `meshfed-root-ca` Secret after the
    federation root was rotated keeps the store's (new) root instead of refusing."""
    trust = tmp_path / "trust"
    trustdir.ensure(trust, "meshfed-system", datetime.now(UTC))
    installed = x509.load_pem_x509_certificate((trust / "root.pem").read_bytes())
    data = tmp_path / "data"
    proc, base = serve(data, trust)
    try:
        wait_serve_ready(proc, base)
        admin = {"Authorization": f"Bearer {(data / 'admin.token').read_text().strip()}"}
        for action in ("prepare", "activate", "retire"):
            r = httpx.post(f"{base}/api/v1/trust/rotation", headers=admin, timeout=30,
                           json={"action": action, "force": True})  # fmt: skip
            assert r.status_code == 200, r.text
        rotated = served_root(base)
        assert rotated != installed
    finally:
        stop_serve(proc)

    proc, base = serve(data, trust)
    try:
        wait_serve_ready(proc, base)
        assert served_root(base) == rotated  # the rotation stands; nothing was replaced
    finally:
        out = stop_serve(proc)
    assert f"federation root {certificate_fingerprint(rotated)}: kept" in out, out
