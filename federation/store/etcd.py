"""The etcd backend: the registry's state in a real etcd cluster, for HA deployments.

etcd already is the store the `Backend` contract describes (MVCC revisions, multi-key
transactions with compares, leases, a revision-ordered watch), so this module mostly
translates: each `commit` is one etcd Txn, each lease an etcd lease, the change feed
an etcd watch. It adds what etcd leaves to clients:

- a key namespace from the URL path, so several federations share one etcd;
- precise errors: a failed Txn's failure branch reads every key it touched in the
  same revision, so the first unmet expectation is reported exactly
  (AlreadyExists / Conflict / NotFound), without a racy follow-up read;
- a watch that never loses or repeats a revision: it remembers the last revision
  it delivered and re-watches from the next one after a dropped stream, a restarted
  member or a leader change, and turns compacted history into a resync snapshot.

The client library is `etcd3aio` (asyncio, mTLS, several endpoints; the classic
`etcd3` no longer imports with current protobuf, see shared/FINDINGS.md). Its unary
services are used as they are. Its `WatchService` is not: it resumes from the last
response's *header* revision, which skips events when a stream drops while catching
up on history, and it waits forever after etcd cancels a watch on compaction. The
watch here drives etcd's Watch RPC directly through the library's generated stub.

URL grammar and options: `federation.store.etcd_url`. Failures surface only as
`federation.errors` exceptions, translated by `etcd_conn.translate` (connection
layer: `federation.store.etcd_conn`). One Watch RPC, decoded into `Changes`, is
`federation.store.etcd_watch.stream`; the resume/resync loop around it is here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

import grpc  # type: ignore[import-untyped]
import grpc.aio  # type: ignore[import-untyped]
from etcd3aio import EtcdError, prefix_range_end
from etcd3aio._protobuf import (
    Compare,
    DeleteRangeRequest,
    LeaseKeepAliveRequest,
    PutRequest,
    RangeRequest,
    RequestOp,
    WatchStub,
)
from etcd3aio.kv import KVService
from etcd3aio.lease import LeaseService

from federation.errors import (
    AlreadyExists,
    Compacted,
    Conflict,
    LeaseNotFound,
    NotFound,
    StoreError,
    StoreUnavailable,
)
from federation.store import etcd_conn, etcd_url, etcd_watch
from federation.store.backend import (
    ABSENT,
    Backend,
    Changes,
    Delete,
    KeyValue,
    Op,
    Put,
    Snapshot,
    WatchMessage,
)

log = logging.getLogger(__name__)
T = TypeVar("T")
KVList = list[KeyValue]  # spelled here: inside the class, `list` is the method

# etcdctl's default --dial-timeout: how long open() waits for any member to answer.
DIAL_TIMEOUT = 2.0
# Keys per Range page when listing (etcd recommends paginating big ranges; 10k keys
# of ~200 bytes stay far below gRPC's message limits and keep server memory flat).
LIST_PAGE = 10_000
# Watch reconnect backoff (seconds): first retry at once-ish, then doubling to a cap
# short enough that a restarted member or a new leader is picked up within ~2 s.
WATCH_BACKOFF_MIN = 0.05
WATCH_BACKOFF_MAX = 2.0


def _kv(ns_len: int, kv: Any) -> KeyValue:
    return KeyValue(
        key=bytes(kv.key[ns_len:]).decode(errors="surrogateescape"),
        value=bytes(kv.value),
        create_revision=int(kv.create_revision),
        mod_revision=int(kv.mod_revision),
        lease=int(kv.lease),
    )


class EtcdBackend(Backend):
    """`Backend` over an etcd v3 cluster. Create with `await EtcdBackend.open(url)`."""

    def __init__(self, url: etcd_url.EtcdURL, channel: Any) -> None:
        self._url = url
        self._channel = channel
        self._ns = url.namespace.encode()
        self._timeout = url.timeout
        self._kv = KVService(channel)
        self._lease = LeaseService(channel)
        self._watch_stub = WatchStub(channel)
        self._closed = asyncio.Event()
        self._streams: set[Any] = set()
        self.endpoints = ",".join(str(e) for e in url.endpoints)

    @classmethod
    async def open(cls, url: str) -> EtcdBackend:
        """Connect and check that a member answers within DIAL_TIMEOUT."""
        parsed = etcd_url.parse(url)
        channel = await etcd_conn.open_channel(parsed)
        backend = cls(parsed, channel)
        try:
            await backend._probe()
        except BaseException:
            await channel.close()
            raise
        return backend

    async def _probe(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DIAL_TIMEOUT
        last: BaseException | None = None
        while (left := deadline - loop.time()) > 0:
            try:
                await self._kv.get(self._ns or b"\0", count_only=True, timeout=left, max_attempts=1)
                return
            except (grpc.aio.AioRpcError, EtcdError, TimeoutError) as exc:
                code = etcd_conn.rpc_code(exc)
                if code is not None and code not in etcd_conn.TRANSIENT:
                    raise etcd_conn.translate(exc, f"at {self.endpoints}") from exc
                last = exc
            await asyncio.sleep(min(0.05, max(0.0, deadline - loop.time())))
        raise StoreUnavailable(
            f"etcd at {self.endpoints}: no member answered within {DIAL_TIMEOUT:g}s"
            + (f" ({etcd_conn.translate(last, 'probe')})" if last else "")
        ) from last

    # -- plumbing ---------------------------------------------------------------

    def _key(self, key: str) -> bytes:
        return self._ns + key.encode(errors="surrogateescape")

    def _range(self, prefix: str) -> tuple[bytes, bytes]:
        start = self._key(prefix)
        if not start:
            return b"\0", b"\0"  # etcd: from the smallest key to the end
        return start, prefix_range_end(start)

    async def _call(self, what: str, fn: Callable[[], Awaitable[T]]) -> T:
        if self._closed.is_set():
            raise StoreError("etcd backend is closed")
        try:
            return await fn()
        except (grpc.aio.AioRpcError, EtcdError, TimeoutError) as exc:
            raise etcd_conn.translate(exc, what) from exc
        except asyncio.CancelledError as exc:
            task = asyncio.current_task()
            if self._closed.is_set() and task is not None and not task.cancelling():
                raise StoreError("etcd backend is closed") from exc
            raise

    # -- reads ------------------------------------------------------------------

    async def get(self, key: str) -> KeyValue | None:
        resp = await self._call("get", lambda: self._kv.get(self._key(key), timeout=self._timeout))
        return _kv(len(self._ns), resp.kvs[0]) if resp.kvs else None

    async def list(self, prefix: str) -> tuple[list[KeyValue], int]:
        start, end = self._range(prefix)
        while True:
            try:
                return await self._list_at(start, end)
            except StoreError as exc:
                # a page fell behind a compaction: start over at a newer revision
                if "compacted" not in etcd_conn.rpc_detail(exc.__cause__ or exc):
                    raise

    async def list_page(self, prefix: str, start: str, limit: int) -> KVList:
        first, end = self._range(prefix)
        key = max(first, self._key(start))
        if end != b"\0" and key >= end:
            return []
        resp = await self._call(
            "list",
            lambda: self._kv.get(key, end, limit=limit, timeout=self._timeout),
        )
        n = len(self._ns)
        return [_kv(n, kv) for kv in resp.kvs]

    async def _list_at(self, start: bytes, end: bytes) -> tuple[KVList, int]:
        out: KVList = []
        revision = 0
        key = start
        while True:
            at = revision
            resp = await self._call(
                "list",
                lambda k=key, r=at: self._kv.get(  # type: ignore[misc]
                    k, end, revision=r, limit=LIST_PAGE, timeout=self._timeout
                ),
            )
            if not revision:
                revision = int(resp.header.revision)
            n = len(self._ns)
            out.extend(_kv(n, kv) for kv in resp.kvs)
            if not resp.more or not resp.kvs:
                return out, revision
            key = bytes(resp.kvs[-1].key) + b"\0"

    async def revision(self) -> int:
        resp = await self._call(
            "revision",
            lambda: self._kv.get(self._ns or b"\0", count_only=True, timeout=self._timeout),
        )
        return int(resp.header.revision)

    # -- writes -----------------------------------------------------------------

    async def commit(self, ops: Sequence[Op]) -> int:
        if not ops:
            return await self.revision()
        seen: set[str] = set()
        compares: list[Any] = []
        success: list[Any] = []
        for op in ops:
            if op.key in seen:
                raise StoreError(f"key {op.key!r} appears twice in one transaction")
            seen.add(op.key)
            k = self._key(op.key)
            if isinstance(op, Delete) and op.must_exist:
                compares.append(Compare(key=k, target=Compare.CREATE, result=Compare.GREATER))
            if op.expect == ABSENT:
                compares.append(Compare(key=k, target=Compare.CREATE, create_revision=0))
            elif op.expect is not None:
                compares.append(Compare(key=k, target=Compare.MOD, mod_revision=op.expect))
            if isinstance(op, Put):
                success.append(
                    RequestOp(request_put=PutRequest(key=k, value=op.value, lease=op.lease))
                )
            else:
                success.append(RequestOp(request_delete_range=DeleteRangeRequest(key=k)))
        # On failure, read every key in the same revision the compares saw.
        failure = (
            [
                RequestOp(request_range=RangeRequest(key=self._key(op.key), keys_only=True))
                for op in ops
            ]
            if compares
            else []
        )
        try:
            # One attempt only: a Txn whose answer was lost may have been applied, and
            # replaying it could fail its own compares or write twice.
            resp = await self._call(
                "commit",
                lambda: self._kv.txn(
                    compares, success, failure, timeout=self._timeout, max_attempts=1
                ),
            )
        except StoreError as exc:
            cause = exc.__cause__
            if cause is not None and "lease not found" in etcd_conn.rpc_detail(cause):
                raise await self._missing_lease(ops) from cause
            raise
        if resp.succeeded:
            return int(resp.header.revision)
        for op, r in zip(ops, resp.responses, strict=True):
            kvs = r.response_range.kvs
            current = int(kvs[0].mod_revision) if kvs else None
            if isinstance(op, Delete) and op.must_exist and current is None:
                raise NotFound(op.key)
            if op.expect == ABSENT and current is not None:
                raise AlreadyExists(op.key)
            if op.expect is not None and op.expect != ABSENT and current != op.expect:
                raise Conflict(op.key, op.expect, current)
        raise StoreError("etcd commit: transaction failed but every expectation holds")

    async def _missing_lease(self, ops: Sequence[Op]) -> LeaseNotFound:
        leases = sorted({op.lease for op in ops if isinstance(op, Put) and op.lease})
        for lease in leases[:-1]:
            ttl = await self._call(
                "lease ttl",
                lambda x=lease: self._lease.time_to_live(x, timeout=self._timeout),  # type: ignore[misc]
            )
            if ttl.TTL <= 0:
                return LeaseNotFound(lease)
        return LeaseNotFound(leases[-1] if leases else 0)

    async def compact(self, revision: int) -> None:
        try:
            await self._call(
                "compact",
                lambda: self._kv.compact(revision, physical=True, timeout=self._timeout),
            )
        except StoreError as exc:
            if "compacted" in etcd_conn.rpc_detail(exc.__cause__ or exc):
                return  # already compacted at or after `revision`
            raise

    # -- leases -----------------------------------------------------------------

    async def lease_grant(self, ttl_seconds: float) -> int:
        ttl = max(1, math.ceil(ttl_seconds))  # etcd TTLs are whole seconds
        resp = await self._call(
            "lease grant", lambda: self._lease.grant(ttl, timeout=self._timeout)
        )
        return int(resp.ID)

    async def lease_keepalive(self, lease: int) -> None:
        async def once() -> int:
            async def request() -> AsyncIterator[Any]:
                yield LeaseKeepAliveRequest(ID=lease)

            call = self._lease._stub.LeaseKeepAlive(request())
            try:
                async with asyncio.timeout(self._timeout):
                    resp = await call.read()
            finally:
                call.cancel()
            if resp is grpc.aio.EOF:
                raise StoreUnavailable("etcd lease keepalive: stream ended without an answer")
            return int(resp.TTL)

        if await self._call("lease keepalive", once) <= 0:
            raise LeaseNotFound(lease)

    async def lease_renew_all(self) -> int:
        """Renew the leases holding keys of this store's namespace (others' leases on a
        shared etcd are left alone: a lease is ours if any key it holds is under us)."""
        listed = await self._call("lease list", lambda: self._lease.leases(timeout=self._timeout))
        renewed = 0
        for status in listed.leases:
            lease = int(status.ID)
            info = await self._call(
                "lease ttl",
                lambda lease=lease: self._lease.time_to_live(  # type: ignore[misc]
                    lease, keys=True, timeout=self._timeout
                ),
            )
            # TTL is whole seconds remaining (0: under a second left); -1: expired
            if int(info.TTL) < 0 or not any(k.startswith(self._ns) for k in info.keys):
                continue
            try:
                await self.lease_keepalive(lease)
            except LeaseNotFound:
                continue  # expired between the two calls
            renewed += 1
        return renewed

    async def lease_revoke(self, lease: int) -> None:
        try:
            await self._call(
                "lease revoke", lambda: self._lease.revoke(lease, timeout=self._timeout)
            )
        except StoreError as exc:
            if "lease not found" in etcd_conn.rpc_detail(exc.__cause__ or exc):
                raise LeaseNotFound(lease) from exc
            raise

    # -- change feed ------------------------------------------------------------

    async def _snapshot(self, prefix: str, resync: bool) -> Snapshot:
        items, revision = await self.list(prefix)
        return Snapshot(tuple(items), revision, resync)

    async def _compacted_after(self, since: int) -> bool:
        """True when history after `since` is (partly) gone, i.e. since < compact revision.

        A Range at revision `since` fails exactly then. (A watch from since+1 would
        still be accepted when since+1 == the compact revision, although the deletes
        at that revision may already be gone.)
        """
        try:
            await self._call(
                "watch",
                lambda: self._kv.get(
                    self._ns or b"\0",
                    revision=max(since, 1),
                    count_only=True,
                    timeout=self._timeout,
                ),
            )
        except StoreError as exc:
            detail = etcd_conn.rpc_detail(exc.__cause__ or exc)
            if "compacted" in detail:
                return True
            if "future revision" in detail:
                return False
            raise
        return False

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closed.wait(), seconds)

    async def watch(
        self, prefix: str, since: int | None = None
    ) -> AsyncGenerator[WatchMessage, None]:
        start, end = self._range(prefix)
        backoff = WATCH_BACKOFF_MIN
        last = since
        resync = False
        while not self._closed.is_set():
            try:
                if last is None or resync:
                    snap = await self._snapshot(prefix, resync)
                    resync = False
                    yield snap
                    last = snap.revision
                    continue
                if await self._compacted_after(last):
                    resync = True
                    continue
                async with contextlib.aclosing(self._stream(start, end, last + 1)) as stream:
                    async for changes in stream:
                        backoff = WATCH_BACKOFF_MIN
                        if changes.revision > last:
                            yield changes
                            last = changes.revision
            except Compacted:
                resync = True
                continue
            except StoreUnavailable as exc:
                if self._closed.is_set():
                    return
                log.info(
                    "etcd watch %r: %s; resuming after %s in %.2fs", prefix, exc, last, backoff
                )
            except StoreError:
                if self._closed.is_set():
                    return
                raise
            await self._sleep(backoff)
            backoff = min(backoff * 2, WATCH_BACKOFF_MAX)

    def _stream(self, start: bytes, end: bytes, from_rev: int) -> AsyncGenerator[Changes, None]:
        """One Watch RPC from `from_rev`, as Changes (see `etcd_watch.stream`)."""
        return etcd_watch.stream(
            self._watch_stub, start, end, from_rev, len(self._ns), self._closed, self._streams
        )

    async def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        for call in list(self._streams):
            call.cancel()
        await self._channel.close()
