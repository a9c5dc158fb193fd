"""A real `meshfed serve` subprocess (SQLite in a temp dir, free ports), shared per module,
and a `meshfed` runner that starts the real entry point in a subprocess, as a user would.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.servers.ports import serve_ports

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Registry:
    url: str
    data_dir: Path
    token_file: Path
    store_url: str
    home: Path  # HOME and XDG_CONFIG_HOME of the CLI runs

    def env(self, **extra: str) -> dict[str, str]:
        env = {
            "PATH": "/usr/bin:/bin",
            "HOME": str(self.home),
            "XDG_CONFIG_HOME": str(self.home / ".config"),
            "MESHFED_DATA_DIR": str(self.home / "no-local-registry"),
            "MESHFED_REGISTRY": self.url,
            "MESHFED_TOKEN_FILE": str(self.token_file),
            "COLUMNS": "200",
        }
        env.update(extra)
        return {k: v for k, v in env.items() if v != ""}

    def run(
        self, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, "-m", "federation.cli", *args],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
            env=self.env() if env is None else env,
        )
        assert "Traceback" not in result.stdout + result.stderr, result.stdout + result.stderr
        return result

    def ok(self, *args: str) -> str:
        result = self.run(*args)
        assert result.returncode == 0, (args, result.stdout, result.stderr)
        return result.stdout

    def store(self, coro_fn: object) -> object:
        """Run `coro_fn(store)` against the registry's SQLite store from this process
        (what an agent's gRPC reports would write: conditions, gateways, exports)."""
        from federation.store import open_store

        async def main() -> object:
            store = await open_store(self.store_url)
            try:
                return await coro_fn(store)  # type: ignore[operator]
            finally:
                await store.close()

        return asyncio.run(main())


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    base = tmp_path_factory.mktemp("meshfed-cli")
    data_dir = base / "data"
    home = base / "home"
    home.mkdir()
    api_port, grpc_port = serve_ports()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESHFED_")}
    log = (base / "serve.log").open("w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "federation.cli",
            "serve",
            "--data-dir",
            str(data_dir),
            "--api",
            f"127.0.0.1:{api_port}",
            "--grpc",
            f"127.0.0.1:{grpc_port}",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{api_port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, (base / "serve.log").read_text()
            assert time.monotonic() < deadline, "meshfed serve never became ready"
            time.sleep(0.05)
        yield Registry(
            url=url,
            data_dir=data_dir,
            token_file=data_dir / "admin.token",
            store_url=f"sqlite:///{data_dir / 'registry.db'}",
            home=home,
        )
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
