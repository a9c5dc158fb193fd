"""The etcd backend's watch stream: one etcd Watch RPC, decoded into `Changes`.

Split from `federation.store.etcd` to keep that module within the size limit and
about the `Backend` contract. `EtcdBackend.watch` owns the resume/resync loop (the
last delivered revision, compaction turned into a snapshot, reconnect backoff);
`stream` here is a single Watch RPC driven through etcd3aio's generated stub, since
the library's own `WatchService` resumes from the wrong revision (see `etcd`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import grpc  # type: ignore[import-untyped]
import grpc.aio  # type: ignore[import-untyped]
from etcd3aio import EtcdError
from etcd3aio._protobuf import WatchCreateRequest, WatchRequest

from federation.errors import Compacted, StoreError, StoreUnavailable
from federation.store import etcd_conn
from federation.store.backend import Changes, Event

# etcd's WithRequireLeader: a member that loses its leader ends our watch streams
# (so we reconnect elsewhere) instead of leaving them silently stalled.
_REQUIRE_LEADER = (("hasleader", "true"),)
_DELETE = 1  # mvccpb.Event.EventType: PUT = 0, DELETE = 1


async def stream(
    stub: Any,
    start: bytes,
    end: bytes,
    from_rev: int,
    ns_len: int,
    closed: asyncio.Event,
    streams: set[Any],
) -> AsyncGenerator[Changes, None]:
    """One Watch RPC from `from_rev`, as Changes; ends when the server ends it.

    `stub` is the channel's `WatchStub`; keys lose their first `ns_len` bytes (the
    namespace). The open call is kept in `streams` so closing the backend can cancel
    it; once `closed` is set, a cancelled read ends the stream quietly.
    """

    async def requests() -> AsyncIterator[Any]:
        create = WatchCreateRequest(key=start, range_end=end, start_revision=from_rev)
        yield WatchRequest(create_request=create)
        await closed.wait()  # keep the request side open for the stream's lifetime

    call = stub.Watch(requests(), metadata=_REQUIRE_LEADER)
    streams.add(call)
    n = ns_len
    try:
        while True:
            try:
                resp = await call.read()
            except (grpc.aio.AioRpcError, EtcdError) as exc:
                raise etcd_conn.translate(exc, "watch") from exc
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if closed.is_set() and task is not None and not task.cancelling():
                    return
                raise
            if resp is grpc.aio.EOF:
                raise StoreUnavailable("etcd watch: stream ended by the server")
            if resp.compact_revision:
                raise Compacted(from_rev, int(resp.compact_revision))
            if resp.canceled:
                reason = str(resp.cancel_reason)
                if "no leader" in reason:
                    raise StoreUnavailable(f"etcd watch: {reason}")
                raise StoreError(f"etcd watch cancelled by the server: {reason}")
            group: list[Event] = []
            for ev in resp.events:
                rev = int(ev.kv.mod_revision)
                if group and group[-1].mod_revision != rev:
                    yield Changes(group[-1].mod_revision, tuple(group))
                    group = []
                key = bytes(ev.kv.key[n:]).decode(errors="surrogateescape")
                if ev.type == _DELETE:
                    group.append(Event("delete", key, None, rev))
                else:
                    group.append(Event("put", key, bytes(ev.kv.value), rev))
            if group:
                yield Changes(group[-1].mod_revision, tuple(group))
    finally:
        streams.discard(call)
        call.cancel()
