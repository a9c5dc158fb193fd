"""Two `meshfed serve` processes on one etcd store serve one federation (issue 4).

The first process creates the federation root and the admin token (written to
its own data dir); the second, given the same key passphrase, reuses both. A
write through the first one's REST API reaches a gRPC Watch connected to the
second one, and both answer the same topology and trust bundle.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from federation.client import ControlPlaneClient, Delta, Snapshot, WatchView, join
from federation.model import ServiceKey
from tests.api.conftest import cluster_body
from tests.servers.etcd import EtcdServer
from tests.servers.ports import serve_ports

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 30.0
# A write on one registry reaches a watcher of the other through etcd's watch;
# generous for a loaded CI machine, the measured time is printed.
PROPAGATION_TIMEOUT = 15.0


@dataclass
class Serve:
    """One `meshfed serve` process."""

    proc: subprocess.Popen[str]
    data_dir: Path
    api: str
    grpc: str
    join: str
    log: Path

    def output(self) -> str:
        return self.log.read_text()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_serve(store_url: str, data_dir: Path, passphrase: str) -> Serve:
    api_port, grpc_port = serve_ports()  # the Join port (grpc + 1) is free too
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESHFED_")}
    env["MESHFED_KEY_PASSPHRASE"] = passphrase
    data_dir.mkdir(parents=True, exist_ok=True)
    log = data_dir.parent / f"{data_dir.name}.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "federation.cli",
                "serve",
                "--store",
                store_url,
                "--data-dir",
                str(data_dir),
                "--api",
                f"127.0.0.1:{api_port}",
                "--grpc",
                f"127.0.0.1:{grpc_port}",
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    serve = Serve(
        proc,
        data_dir,
        f"http://127.0.0.1:{api_port}",
        f"127.0.0.1:{grpc_port}",
        f"127.0.0.1:{grpc_port + 1}",
        log,
    )
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        assert proc.poll() is None, f"serve exited early:\n{serve.output()}"
        try:
            ready = httpx.get(f"{serve.api}/readyz", timeout=1).status_code == 200
        except httpx.TransportError:
            ready = False
        if ready and "REST API on" in serve.output():
            return serve
        assert time.monotonic() < deadline, f"serve never became ready:\n{serve.output()}"
        time.sleep(0.05)


@pytest.fixture
def two_registries(tmp_path: Path) -> Iterator[tuple[Serve, Serve]]:
    passphrase = secrets.token_urlsafe(32)
    with EtcdServer() as etcd:
        url = etcd.url_for("meshfed-ha")
        first = start_serve(url, tmp_path / "d1", passphrase)
        second = None
        try:
            second = start_serve(url, tmp_path / "d2", passphrase)
            yield first, second
        finally:
            for serve in (second, first):
                if serve is not None:
                    serve.stop()


async def test_a_write_through_one_registry_reaches_a_watcher_of_the_other(
    two_registries: tuple[Serve, Serve],
) -> None:
    first, second = two_registries
    # Only the first start bootstrapped: it printed the token path and wrote the file;
    # the second found the root and the admin token in the store and made neither.
    token_file = first.data_dir / "admin.token"
    assert f"admin token: {token_file}" in first.output()
    assert "admin token:" not in second.output()
    assert not (second.data_dir / "admin.token").exists()
    token = token_file.read_text().strip()
    headers = {"Authorization": f"Bearer {token}"}

    async with (
        httpx.AsyncClient(base_url=first.api, headers=headers, timeout=10) as one,
        httpx.AsyncClient(base_url=second.api, headers=headers, timeout=10) as two,
    ):
        # One federation root: both serve the same trust bundle; the token works on both.
        roots = (await one.get("/api/v1/trust/roots.pem")).content
        assert roots.startswith(b"-----BEGIN CERTIFICATE-----")
        assert (await two.get("/api/v1/trust/roots.pem")).content == roots

        for name in ("ha-east", "ha-west"):
            r = await one.post("/api/v1/clusters", json=cluster_body(name))
            assert r.status_code == 201, r.text
        r = await two.post("/api/v1/links", json={"a": "ha-east", "b": "ha-west"})
        assert r.status_code == 201, r.text
        topo_one = (await one.get("/api/v1/topology")).json()
        assert topo_one == (await two.get("/api/v1/topology")).json()
        assert {n["name"] for n in topo_one["nodes"]} == {"ha-east", "ha-west"}
        assert [(e["a"], e["b"]) for e in topo_one["edges"]] == [("ha-east", "ha-west")]

        # ha-west's agent joins through the SECOND registry (token minted by the first).
        r = await one.post("/api/v1/clusters/ha-west/join-tokens")
        assert r.status_code == 201, r.text
        identity = await join(
            second.join,
            r.json()["token"],
            cluster="ha-west",
            component="agent",
            trust_domain="ha-west.example",
            ca_pem=roots,
        )
        async with ControlPlaneClient(second.grpc, identity) as client:
            events = client.watch()
            view = WatchView()
            while not isinstance(first_event := await anext(events), Snapshot):
                pass
            view = view.apply(first_event)
            assert set(view.items.links) == {"ha-east/ha-west"}
            assert not view.items.imports

            # The write: a static export of ha-east through the FIRST registry's REST API.
            body = {"ports": [{"port": 8080}], "endpoints": [{"address": "10.9.0.1"}]}
            written = time.monotonic()
            r = await one.put("/api/v1/clusters/ha-east/exports/shop/cart", json=body)
            assert r.status_code == 201, r.text
            cart = ServiceKey("shop", "cart")

            async def until_imported() -> WatchView:
                current = view
                async for event in events:
                    current = current.apply(event)
                    if isinstance(event, Delta) and cart in current.items.imports:
                        return current
                raise AssertionError("watch ended")

            view = await asyncio.wait_for(until_imported(), PROPAGATION_TIMEOUT)
            took = time.monotonic() - written
            imported = view.items.imports[cart]
            endpoints = imported.endpoints_by_cluster()["ha-east"]
            assert [ep.address for ep in endpoints] == ["10.9.0.1"]
            print(f"REST write on registry 1 -> Watch on registry 2: {took * 1000:.1f} ms")
            await events.aclose()

        # And back: what the second registry deletes is gone from the first one's view.
        assert (await two.delete("/api/v1/clusters/ha-east/exports/shop/cart")).status_code == 204
        assert (await one.get("/api/v1/clusters/ha-east/exports/shop/cart")).status_code == 404
        assert (await one.get("/api/v1/topology")).json() == (
            await two.get("/api/v1/topology")
        ).json()
