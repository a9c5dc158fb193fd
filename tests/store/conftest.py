"""Fixtures that run the store contract suite against every backend on real servers.

`store_url` is parametrized over ["sqlite", "postgresql", "etcd"] and yields a fresh,
isolated URL per test: a new SQLite file, a new PostgreSQL database, or a new etcd
key namespace. The PostgreSQL and etcd servers are started once per session, and
only when a test asks for them (`-k sqlite` starts neither). A missing server binary
fails the test with a message saying what to install: nothing here is skipped.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from federation.store import Store, open_store
from tests.servers.postgres import PostgresServer

# "etcd-3" is the same contract on a 3-member etcd cluster (issue 2: 1 and 3 members).
BACKENDS = ["sqlite", "postgresql", "etcd", "etcd-3"]


def _unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:20]}"


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    server = PostgresServer()
    try:
        server.start()
    except Exception as exc:
        server.stop()
        pytest.fail(f"cannot start the test PostgreSQL server: {exc}", pytrace=False)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def etcd_server() -> Iterator[Any]:
    try:
        from tests.servers.etcd import EtcdServer
    except ImportError as exc:
        pytest.fail(f"tests/servers/etcd.py (EtcdServer) cannot be imported: {exc}", pytrace=False)
    server = EtcdServer()
    try:
        server.start()
    except Exception as exc:
        server.close()
        pytest.fail(f"cannot start the test etcd server: {exc}", pytrace=False)
    yield server
    server.close()


@pytest.fixture(scope="session")
def etcd_cluster() -> Iterator[Any]:
    from tests.servers.etcd import EtcdCluster

    cluster = EtcdCluster(3)
    try:
        cluster.start()
    except Exception as exc:
        cluster.close()
        pytest.fail(f"cannot start the test 3-member etcd cluster: {exc}", pytrace=False)
    yield cluster
    cluster.close()


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL naming an empty store that no other test uses."""
    kind = request.param
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path}/registry.db"
    elif kind == "postgresql":
        server: PostgresServer = request.getfixturevalue("postgres_server")
        name = _unique("t")
        url = server.create_database(name)
        yield url
        server.drop_database(name)
    elif kind == "etcd":
        etcd = request.getfixturevalue("etcd_server")
        yield etcd.url_for(_unique("t"))
    elif kind == "etcd-3":
        cluster = request.getfixturevalue("etcd_cluster")
        yield cluster.client_url(_unique("t"))
    else:  # pragma: no cover - params above are exhaustive
        raise AssertionError(kind)


@pytest.fixture
def backend_name(store_url: str) -> str:
    """Which backend this test instance runs against ("sqlite", "postgresql", "etcd")."""
    return store_url.split(":", 1)[0].split("+", 1)[0]


StoreFactory = Callable[[], Awaitable[Store]]


@pytest.fixture
async def open_stores(store_url: str) -> AsyncIterator[StoreFactory]:
    """Open more `Store`s on the same URL (separate connections); all closed after."""
    opened: list[Store] = []

    async def factory() -> Store:
        store = await open_store(store_url)
        opened.append(store)
        return store

    yield factory
    for store in reversed(opened):
        await store.close()


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    s = await open_store(store_url)
    try:
        yield s
    finally:
        await s.close()
