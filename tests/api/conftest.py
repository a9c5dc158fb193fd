"""A real registry over real HTTP: uvicorn on a free loopback port, SQLite in tmp_path.

The server runs in its own thread with its own event loop, so tests use a plain
synchronous httpx client exactly as curl or Terraform would. One server per test
module (tests use distinct names); `api.token(role)` mints a token per role.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import uvicorn
from prometheus_client import CollectorRegistry

from federation.api import create_app
from federation.registry.serve import bootstrap, open_registry
from federation.registry.service import Registry
from tests.servers.ports import free_port
from trust_bundle import PassphraseProtector

PASSPHRASE = b"test-passphrase-0123456789"


@dataclass
class Api:
    base_url: str
    admin_token: str
    store_url: str
    registry: Registry
    loop: asyncio.AbstractEventLoop
    tokens: dict[str, str] = field(default_factory=dict)

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=10)

    def as_role(self, role: str) -> httpx.Client:
        return self.client(self.token(role))

    def token(self, role: str) -> str:
        if role == "admin":
            return self.admin_token
        if role not in self.tokens:
            with self.client(self.admin_token) as c:
                r = c.post("/api/v1/tokens", json={"name": f"{role}-bot", "role": role})
                assert r.status_code == 201, r.text
                self.tokens[role] = r.json()["token"]
        return self.tokens[role]

    def run(self, coro: object) -> object:
        """Run a coroutine on the server's loop (to seed the store directly)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    data_dir: Path = tmp_path_factory.mktemp("registry")
    store_url = f"sqlite:///{data_dir / 'registry.db'}"
    port = free_port()
    started = threading.Event()
    holder: dict[str, object] = {}

    async def main() -> None:
        metrics = CollectorRegistry()
        registry = await open_registry(store_url, PassphraseProtector(PASSPHRASE), metrics)
        await bootstrap(registry, data_dir, datetime.now(UTC))
        holder["registry"] = registry
        holder["loop"] = asyncio.get_running_loop()
        server = uvicorn.Server(
            uvicorn.Config(
                create_app(registry, metrics_registry=metrics),
                host="127.0.0.1",
                port=port,
                log_level="warning",
                lifespan="off",
            )
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
    token = (data_dir / "admin.token").read_text().strip()
    api = Api(
        base_url=f"http://127.0.0.1:{port}",
        admin_token=token,
        store_url=store_url,
        registry=holder["registry"],  # type: ignore[arg-type]
        loop=holder["loop"],  # type: ignore[arg-type]
    )
    yield api
    holder["server"].should_exit = True  # type: ignore[attr-defined]
    thread.join(20)


def cluster_body(name: str, **extra: object) -> dict[str, object]:
    return {
        "name": name,
        "region": "eu-west-1",
        "zone": "eu-west-1a",
        "trust_domain": f"{name}.example",
        **extra,
    }
