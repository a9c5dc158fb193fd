"""`meshfed serve` as a real process: first start, the token file, curl-like use, SIGTERM."""

from __future__ import annotations

import signal
import stat
import subprocess
import time
from pathlib import Path

import httpx

from tests.api.conftest import cluster_body
from tests.servers.ports import clean_env, serve_argv, serve_ports

ROOT = Path(__file__).resolve().parents[2]


def test_meshfed_serve_first_start_topology_and_sigterm(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    api_port, grpc_port = serve_ports()
    proc = subprocess.Popen(
        serve_argv(data_dir, api_port, grpc_port),
        cwd=ROOT,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{api_port}"
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        while not any(line.startswith("admin token: ") for line in lines):
            line = proc.stdout.readline()
            assert line, f"serve exited early: {''.join(lines)}"
            lines.append(line)
        token_path = Path(
            next(ln for ln in lines if ln.startswith("admin token: ")).split(": ", 1)[1].strip()
        )
        assert token_path == data_dir / "admin.token"
        assert stat.S_IMODE(token_path.stat().st_mode) == 0o600
        assert stat.S_IMODE((data_dir / "key.passphrase").stat().st_mode) == 0o600
        token = token_path.read_text().strip()
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"serve never became ready (exit {proc.poll()})"
            time.sleep(0.05)
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=base, headers=headers, timeout=10) as c:
            assert c.post("/api/v1/clusters", json=cluster_body("east")).status_code == 201
            assert c.post("/api/v1/clusters", json=cluster_body("west")).status_code == 201
            assert c.post("/api/v1/links", json={"a": "east", "b": "west"}).status_code == 201
            topo = c.get("/api/v1/topology").json()
        assert {n["name"] for n in topo["nodes"]} == {"east", "west"}
        assert [(e["a"], e["b"]) for e in topo["edges"]] == [("east", "west")]
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
        lines.append(out)
        assert proc.returncode == 0, "".join(lines)
        assert token not in "".join(lines)  # the path is printed, never the token
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_second_start_reuses_the_federation_and_prints_the_same_path(tmp_path: Path) -> None:
    import asyncio
    from datetime import UTC, datetime

    from prometheus_client import CollectorRegistry

    from federation.registry.serve import bootstrap, load_protector, open_registry

    async def start() -> tuple[Path | None, bytes]:
        registry = await open_registry(
            f"sqlite:///{tmp_path / 'r.db'}", load_protector(tmp_path), CollectorRegistry()
        )
        try:
            path = await bootstrap(registry, tmp_path, datetime.now(UTC))
            return path, await registry.trust.bundle_pem()
        finally:
            await registry.store.close()

    first, roots1 = asyncio.run(start())
    token = (tmp_path / "admin.token").read_text()
    second, roots2 = asyncio.run(start())
    assert first == second == tmp_path / "admin.token"
    assert (tmp_path / "admin.token").read_text() == token  # not replaced
    assert roots1 == roots2  # same federation root
