"""Root rotation over real HTTP and the real TrustService, with real mTLS handshakes.

The registry's clock is the wall clock plus an offset the test moves: it starts 20
minutes in the past so that, after waiting out propagation (3 x the 300 s refresh
hint), activation and the certificates it signs happen at wall-clock time, which
OpenSSL checks in every handshake. SVIDs come from `TrustService.sign_component_csr`,
the code behind the control plane's Join/SignCSR. Bundles are read from
GET /api/v1/trust/bundles (the TrustDomain records Watch pushes to gateways and
agents) and /api/v1/trust/roots.pem.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
import uvicorn
from cryptography import x509
from prometheus_client import CollectorRegistry

from federation.api import create_app
from federation.model import CaMaterial
from federation.registry.rotation_view import RETIRE_WAIT
from federation.registry.serve import bootstrap, open_registry
from federation.registry.service import Registry
from tests.api.conftest import PASSPHRASE, Api, cluster_body, free_port
from trust_bundle import (
    CertificateAuthority,
    PassphraseProtector,
    create_intermediate_ca,
    gateway_id,
    generate_key,
    make_csr,
)
from trust_bundle.exports import pem

START = timedelta(minutes=-20)  # the registry's clock at first: 20 minutes ago
PROPAGATED = timedelta(minutes=-4)  # 16 minutes later: 3 x 300 s have passed


@dataclass
class Clocked:
    api: Api
    registry: Registry
    offset: list[timedelta] = field(default_factory=lambda: [START])
    tls_dir: Path = Path()

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset[0]

    def set_clock(self, offset: timedelta) -> None:
        self.offset[0] = offset


@pytest.fixture
def reg(tmp_path: Path) -> Iterator[Clocked]:
    store_url = f"sqlite:///{tmp_path / 'registry.db'}"
    port = free_port()
    started = threading.Event()
    offset = [START]
    holder: dict[str, Any] = {}

    def clock() -> datetime:
        return datetime.now(UTC) + offset[0]

    async def main() -> None:
        metrics = CollectorRegistry()
        registry = await open_registry(store_url, PassphraseProtector(PASSPHRASE), metrics)
        await bootstrap(registry, tmp_path, clock())
        holder["registry"], holder["loop"] = registry, asyncio.get_running_loop()
        app = create_app(registry, clock=clock, metrics_registry=metrics)
        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
        )
        holder["server"] = server
        task = asyncio.create_task(server.serve())
        while not server.started and not task.done():
            await asyncio.sleep(0.01)
        started.set()
        await task
        await registry.store.close()

    thread = threading.Thread(target=lambda: asyncio.run(main()), daemon=True)
    thread.start()
    assert started.wait(20), "registry did not start"
    api = Api(
        base_url=f"http://127.0.0.1:{port}",
        admin_token=(tmp_path / "admin.token").read_text().strip(),
        store_url=store_url,
        registry=holder["registry"],
        loop=holder["loop"],
    )
    yield Clocked(api, holder["registry"], offset, tmp_path / "tls")
    holder["server"].should_exit = True
    thread.join(20)


# ------------------------------------------------------------------ helpers


@dataclass(frozen=True)
class Svid:
    chain_pem: bytes
    key_pem: bytes

    @property
    def leaf(self) -> x509.Certificate:
        return x509.load_pem_x509_certificates(self.chain_pem)[0]


def issue(reg: Clocked, cluster: str) -> Svid:
    """A gateway SVID through the SignCSR code path, at the registry's clock."""
    key = generate_key()
    csr = make_csr(key, gateway_id(f"{cluster}.example", cluster))
    signed = reg.api.run(reg.registry.trust.sign_component_csr(cluster, "gateway", csr, reg.now()))
    chain, _ = cast(tuple[bytes, bytes], signed)
    return Svid(chain, key.unencrypted_pkcs8_pem())


def context(reg: Clocked, svid: Svid, roots_pem: str, *, server: bool) -> ssl.SSLContext:
    reg.tls_dir.mkdir(exist_ok=True)
    name = f"{svid.leaf.serial_number:x}"
    cert_file, key_file = reg.tls_dir / f"{name}.pem", reg.tls_dir / f"{name}.key"
    cert_file.write_bytes(svid.chain_pem)
    key_file.write_bytes(svid.key_pem)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server else ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False  # SPIFFE authenticates the URI SAN
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cadata=roots_pem)
    ctx.load_cert_chain(cert_file, key_file)
    return ctx


class Echo:
    """An mTLS echo server; `context` may be swapped (a gateway reloading its trust)."""

    def __init__(self, ctx: ssl.SSLContext) -> None:
        self.context = ctx
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn, self.context), daemon=True).start()

    @staticmethod
    def _serve(conn: socket.socket, ctx: ssl.SSLContext) -> None:
        conn.settimeout(5)
        try:
            with ctx.wrap_socket(conn, server_side=True) as tls:
                while data := tls.recv(1024):
                    tls.sendall(data)
        except (ssl.SSLError, OSError):
            pass
        finally:
            conn.close()

    def connect(self, ctx: ssl.SSLContext) -> ssl.SSLSocket:
        return ctx.wrap_socket(socket.create_connection(("127.0.0.1", self.port), timeout=5))

    def works(self, ctx: ssl.SSLContext) -> bool:
        """One new connection: handshake and an echo (TLS 1.3 reports a rejected client
        certificate only on the client's first read)."""
        try:
            with self.connect(ctx) as sock:
                return roundtrip(sock, b"new") == b"new"
        except (ssl.SSLError, OSError):
            return False

    def close(self) -> None:
        self.listener.close()


def roundtrip(sock: ssl.SSLSocket, payload: bytes) -> bytes:
    sock.sendall(payload)
    return sock.recv(1024)


def bundles(c: httpx.Client) -> dict[str, tuple[int, list[str]]]:
    """trust domain -> (spiffe_sequence, root fingerprints) as served."""
    served = c.get("/api/v1/trust/bundles").json()
    return {
        name.removeprefix("spiffe://"): (
            doc["spiffe_sequence"],
            [hashlib.sha256(base64.b64decode(k["x5c"][0])).hexdigest() for k in doc["keys"]],
        )
        for name, doc in served.items()
    }


def rotate(c: httpx.Client, action: str, *, force: bool = False) -> httpx.Response:
    return c.post("/api/v1/trust/rotation", json={"action": action, "force": force})


def refused(r: httpx.Response, needle: str) -> None:
    assert r.status_code == 409, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["reason"] == "RotationRefused"
    assert needle in body["detail"], body["detail"]


def check(status: dict[str, Any], name: str) -> bool:
    found = [c["ok"] for c in status["checks"] if c["name"] == name]
    assert found, (name, status["checks"])
    return bool(found[0])


# ------------------------------------------------------------------ tests


def test_rotation_walks_every_stage_with_live_mtls(reg: Clocked) -> None:
    admin, viewer = reg.api.as_role("admin"), reg.api.as_role("viewer")
    for name in ("east", "west"):
        assert admin.post("/api/v1/clusters", json=cluster_body(name)).status_code == 201
    domains = {"meshfed.local", "east.example", "west.example"}
    roots_before = viewer.get("/api/v1/trust/roots.pem").text
    east_old, west_old = issue(reg, "east"), issue(reg, "west")
    server = Echo(context(reg, west_old, roots_before, server=True))
    before = server.connect(context(reg, east_old, roots_before, server=False))
    assert roundtrip(before, b"before") == b"before"

    status = viewer.get("/api/v1/trust/rotation").json()
    assert (status["stage"], status["next_action"], status["ready"]) == ("stable", "prepare", True)
    old_fp = status["current_root"]["fingerprint_sha256"]
    assert status["next_root"] is None
    assert {i["name"]: i["root"] for i in status["intermediates"]} == {
        "east": "current",
        "west": "current",
        "registry": "current",
    }
    seq0 = bundles(viewer)
    assert set(seq0) == domains and all(fps == [old_fp] for _, fps in seq0.values())
    refused(rotate(admin, "activate"), "activate needs stage propagating, is stable")
    refused(rotate(admin, "retire"), "retire needs stage active, is stable")

    # prepare: the next root joins every bundle, sequence + 1
    r = rotate(admin, "prepare")
    assert r.status_code == 200, r.text
    status = r.json()["rotation"]
    new_fp = status["next_root"]["fingerprint_sha256"]
    assert (status["stage"], status["signing_root"]) == ("propagating", "current")
    seq1 = bundles(viewer)
    for td in domains:
        assert seq1[td] == (seq0[td][0] + 1, [old_fp, new_fp])
    roots_prepared = viewer.get("/api/v1/trust/roots.pem").text
    assert roots_prepared.count("BEGIN CERTIFICATE") == 2
    refused(rotate(admin, "prepare"), "prepare needs stage stable, is propagating")

    # propagate: no gateway reports here, so activate is refused until 3 x refresh hint
    refused(rotate(admin, "activate"), "propagation incomplete")
    refused(rotate(admin, "retire"), "retire needs stage active, is propagating")
    status = viewer.get("/api/v1/trust/rotation").json()
    assert status["propagation"]["required_seconds"] == 900
    assert status["propagation"]["pending"] == ["east", "west"]
    assert not status["ready"] and not check(status, "propagation complete")
    old_ctx = context(reg, east_old, roots_prepared, server=False)
    server.context = context(reg, west_old, roots_prepared, server=True)
    assert server.works(old_ctx)
    assert roundtrip(before, b"still") == b"still"

    reg.set_clock(PROPAGATED)
    status = viewer.get("/api/v1/trust/rotation").json()
    assert status["propagation"]["complete"] and status["ready"]

    # activate: every intermediate re-issued under the next root; bundles unchanged
    east_ca_before = reg.api.run(reg.registry.trust.cluster_ca_certificate("east"))
    r = rotate(admin, "activate")
    assert r.status_code == 200, r.text
    assert "3 intermediate(s) re-issued" in r.json()["message"]
    status = r.json()["rotation"]
    assert (status["stage"], status["signing_root"]) == ("active", "next")
    assert {i["root"] for i in status["intermediates"]} == {"next"}
    assert reg.api.run(reg.registry.trust.cluster_ca_certificate("east")) != east_ca_before
    assert bundles(viewer) == seq1

    # SignCSR now chains to the new intermediate: a peer holding the bundle served
    # after prepare verifies it, a peer holding only the old root does not.
    east_new = issue(reg, "east")
    new_issuer = x509.load_pem_x509_certificates(east_new.chain_pem)[1]
    east_ca_after = reg.api.run(reg.registry.trust.cluster_ca_certificate("east"))
    assert new_issuer == x509.load_pem_x509_certificate(east_ca_after)  # type: ignore[arg-type]
    assert server.works(context(reg, east_new, roots_prepared, server=False))
    reverse = Echo(context(reg, east_new, roots_prepared, server=True))
    assert reverse.works(context(reg, west_old, roots_prepared, server=False))
    stale = Echo(context(reg, west_old, roots_before, server=True))
    assert not stale.works(context(reg, east_new, roots_prepared, server=False))
    assert roundtrip(before, b"still") == b"still"

    # retire is refused while a stored intermediate chains only to the old root
    # (here one written under the old root behind the rotation's back), even forced
    stored_root = reg.api.run(reg.registry.store.cas.get("root")).record  # type: ignore[attr-defined]
    protector = PassphraseProtector(PASSPHRASE)
    old_root = CertificateAuthority(
        x509.load_pem_x509_certificate(stored_root.cert_pem.encode()),
        protector.unseal(stored_root.sealed_key.encode()),
    )
    late = create_intermediate_ca(old_root, "south", "south.example", reg.now())
    reg.api.run(
        reg.registry.store.cas.put(
            CaMaterial(
                "south",
                "intermediate",
                pem([late.certificate]).decode(),
                protector.seal(late.key).decode(),
                late.certificate.not_valid_after_utc,
                pem(list(late.chain)).decode(),
            )
        )
    )
    refused(
        rotate(admin, "retire", force=True), "1 certificate(s) still chain only to the old root"
    )
    status = viewer.get("/api/v1/trust/rotation").json()
    assert not check(status, "every intermediate chains to the next root")
    r = rotate(admin, "activate")  # again: re-issues what is still under the old root
    assert r.status_code == 200 and "1 intermediate(s) re-issued" in r.json()["message"], r.text

    # retire waits after activate: SVIDs and the control plane certificate renew
    refused(rotate(admin, "retire"), "SVIDs issued under the old intermediates may be valid")
    reg.set_clock(PROPAGATED + RETIRE_WAIT)
    r = rotate(admin, "retire")
    assert r.status_code == 200, r.text
    status = r.json()["rotation"]
    assert (status["stage"], status["next_root"]) == ("stable", None)
    assert status["current_root"]["fingerprint_sha256"] == new_fp
    seq2 = bundles(viewer)
    for td in domains:
        assert seq2[td] == (seq1[td][0] + 1, [new_fp])
    roots_after = viewer.get("/api/v1/trust/roots.pem").text
    assert roots_after.count("BEGIN CERTIFICATE") == 1

    # after retire: a certificate chaining only to the old root is rejected by the
    # served bundle; new SVIDs work; the connection opened before rotation is still up
    reg.set_clock(timedelta(0))
    west_new = issue(reg, "west")
    after = Echo(context(reg, east_new, roots_after, server=True))
    assert not after.works(context(reg, west_old, roots_before, server=False))
    assert after.works(context(reg, west_new, roots_after, server=False))
    assert roundtrip(before, b"after") == b"after"
    before.close()
    for s in (server, reverse, stale, after):
        s.close()

    events = [
        (e["action"], e["actor"])
        for e in admin.get("/api/v1/events", params={"limit": 500}).json()["items"]
        if e["target_kind"] == "rotations"
    ]
    assert events == [
        ("rotation-prepare", "admin"),
        ("rotation-activate", "admin"),
        ("rotation-retire", "admin"),
    ]


def test_abort_roles_and_clusters_joining_mid_rotation(reg: Clocked) -> None:
    admin, viewer, editor = (reg.api.as_role(r) for r in ("admin", "viewer", "editor"))
    assert admin.post("/api/v1/clusters", json=cluster_body("east")).status_code == 201
    assert viewer.get("/api/v1/trust/rotation").status_code == 200
    assert rotate(viewer, "prepare").status_code == 403
    assert rotate(editor, "prepare").status_code == 403
    assert reg.api.client().get("/api/v1/trust/rotation").status_code == 401
    bad = rotate(admin, "explode")
    assert bad.status_code == 422 and bad.json()["field"] == "action"
    refused(rotate(admin, "abort"), "abort is only possible while propagating, is stable")

    seq0 = bundles(viewer)
    first = rotate(admin, "prepare").json()["rotation"]["next_root"]["fingerprint_sha256"]
    r = rotate(admin, "abort")
    assert r.status_code == 200, r.text
    assert (r.json()["rotation"]["stage"], r.json()["rotation"]["next_root"]) == ("stable", None)
    for td, (seq, fps) in bundles(viewer).items():
        assert (seq, fps) == (seq0[td][0] + 2, seq0[td][1])

    second = rotate(admin, "prepare").json()["rotation"]["next_root"]["fingerprint_sha256"]
    assert second != first
    # a cluster joining while propagating gets both roots and a current-root intermediate
    assert admin.post("/api/v1/clusters", json=cluster_body("north")).status_code == 201
    assert len(bundles(viewer)["north.example"][1]) == 2
    r = rotate(admin, "activate", force=True)  # force: the operator vouches for clusters
    assert r.status_code == 200, r.text
    refused(rotate(admin, "abort"), "abort is only possible while propagating, is active")
    # a cluster joining after activate gets an intermediate under the next root
    assert admin.post("/api/v1/clusters", json=cluster_body("south")).status_code == 201
    status = viewer.get("/api/v1/trust/rotation").json()
    assert {i["name"]: i["root"] for i in status["intermediates"]} == {
        "east": "next",
        "north": "next",
        "registry": "next",
        "south": "next",
    }
    assert bundles(viewer)["south.example"][1] == [
        status["current_root"]["fingerprint_sha256"],
        second,
    ]
    r = rotate(admin, "retire", force=True)
    assert r.status_code == 200, r.text
    assert {fps[0] for _, fps in bundles(viewer).values()} == {second}
