"""A `Backend` wrapper that times every store call for Prometheus.

Why this module exists: the registry's latency is mostly the store's, and an
operator needs to tell "the API is slow" from "the database is slow". Wrapping
the backend times every caller (REST, gRPC, trust) without touching the store
package. The histogram is `meshfed_store_request_duration_seconds{operation}`.
"""

from __future__ import annotations

import builtins
import time
from collections.abc import AsyncGenerator, Sequence

from prometheus_client import CollectorRegistry, Histogram

from federation.store.backend import Backend, KeyValue, Op, WatchMessage

# Store calls take from ~50 us (SQLite get) to ~100 ms (etcd commit across regions);
# buckets from 100 us to 2.5 s in roughly x2.5 steps, like prometheus_client's defaults.
STORE_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    1.0,
    2.5,
)


class TimedBackend(Backend):
    """Delegates to `inner`, observing each call's duration."""

    def __init__(self, inner: Backend, registry: CollectorRegistry) -> None:
        self.inner = inner
        self._hist = Histogram(
            "meshfed_store_request_duration_seconds",
            "Time spent in store calls, by operation.",
            ["operation"],
            buckets=STORE_BUCKETS,
            registry=registry,
        )

    def _observe(self, operation: str, started: float) -> None:
        self._hist.labels(operation).observe(time.perf_counter() - started)

    async def get(self, key: str) -> KeyValue | None:
        started = time.perf_counter()
        try:
            return await self.inner.get(key)
        finally:
            self._observe("get", started)

    async def list(self, prefix: str) -> tuple[list[KeyValue], int]:
        started = time.perf_counter()
        try:
            return await self.inner.list(prefix)
        finally:
            self._observe("list", started)

    async def list_page(self, prefix: str, start: str, limit: int) -> builtins.list[KeyValue]:
        started = time.perf_counter()
        try:
            return await self.inner.list_page(prefix, start, limit)
        finally:
            self._observe("list", started)

    async def commit(self, ops: Sequence[Op]) -> int:
        started = time.perf_counter()
        try:
            return await self.inner.commit(ops)
        finally:
            self._observe("commit", started)

    async def revision(self) -> int:
        started = time.perf_counter()
        try:
            return await self.inner.revision()
        finally:
            self._observe("revision", started)

    async def lease_grant(self, ttl_seconds: float) -> int:
        return await self.inner.lease_grant(ttl_seconds)

    async def lease_keepalive(self, lease: int) -> None:
        await self.inner.lease_keepalive(lease)

    async def lease_revoke(self, lease: int) -> None:
        await self.inner.lease_revoke(lease)

    def watch(self, prefix: str, since: int | None = None) -> AsyncGenerator[WatchMessage, None]:
        return self.inner.watch(prefix, since)

    async def lease_renew_all(self) -> int:
        return await self.inner.lease_renew_all()

    async def compact(self, revision: int) -> None:
        await self.inner.compact(revision)

    async def close(self) -> None:
        await self.inner.close()
