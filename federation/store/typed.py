"""Typed records over a raw `Backend`: what the registry code actually calls.

`Store` maps each record kind to a key prefix (`/meshfed/<kind>/<record key>`),
encodes records as JSON, and turns the backend's raw change feed into typed
events. Revisions flow through unchanged so callers can do optimistic concurrency:
read a record with its revision, update it naming that revision, get `Conflict`
if someone else wrote in between.
"""

from __future__ import annotations

import builtins
from collections.abc import AsyncGenerator, Iterable, Sequence
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

import orjson

from federation.errors import AlreadyExists, Conflict, NotFound, StoreError
from federation.model import (
    KIND_BY_NAME,
    ApiToken,
    AuditEvent,
    BundleReport,
    CaMaterial,
    Cluster,
    Endpoint,
    Gateway,
    JoinToken,
    Link,
    Record,
    RootRotation,
    ServiceExport,
    TrustDomain,
    endpoint_prefix,
)
from federation.store.backend import (
    ABSENT,
    ANY,
    Backend,
    Changes,
    Delete,
    Event,
    KeyValue,
    Op,
    Put,
    Snapshot,
)
from federation.store.gcpause import gc_paused

ROOT = "/meshfed/"

R = TypeVar("R", bound=Record)


@dataclass(frozen=True, slots=True)
class Versioned(Generic[R]):
    """A record as stored, with the revisions needed for compare-and-swap."""

    record: R
    revision: int  # mod_revision: pass it back to update/delete
    create_revision: int
    lease: int = 0


@dataclass(frozen=True, slots=True)
class Change:
    """One typed change in the feed. `record` is None for deletes."""

    type: Literal["put", "delete"]
    kind: str
    key: str
    record: Record | None


@dataclass(frozen=True, slots=True)
class TypedSnapshot:
    items: tuple[Versioned[Record], ...]
    revision: int
    resync: bool = False


@dataclass(frozen=True, slots=True)
class TypedChanges:
    revision: int
    changes: tuple[Change, ...]


FeedMessage = TypedSnapshot | TypedChanges


def storage_key(kind: str, key: str) -> str:
    return f"{ROOT}{kind}/{key}"


def encode(record: Record) -> bytes:
    return orjson.dumps(record.to_dict(), option=orjson.OPT_SORT_KEYS)


def _split(raw_key: str) -> tuple[str, str]:
    if not raw_key.startswith(ROOT):
        raise StoreError(f"key {raw_key!r} is outside {ROOT}")
    kind, _, key = raw_key[len(ROOT) :].partition("/")
    return kind, key


def decode(raw_key: str, value: bytes) -> Record:
    kind, _ = _split(raw_key)
    cls = KIND_BY_NAME.get(kind)
    if cls is None:
        raise StoreError(f"key {raw_key!r} has unknown kind {kind!r}")
    try:
        return cls.from_stored(orjson.loads(value))
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise StoreError(f"corrupt record at {raw_key!r}: {exc}") from exc


def _versioned(kv: KeyValue) -> Versioned[Record]:
    return Versioned(decode(kv.key, kv.value), kv.mod_revision, kv.create_revision, kv.lease)


class Collection(Generic[R]):
    """CRUD for one record kind."""

    def __init__(self, backend: Backend, cls: type[R]) -> None:
        self._backend = backend
        self._cls = cls
        self.kind = cls.KIND

    def _key(self, key: str) -> str:
        return storage_key(self.kind, key)

    def _wrap(self, kv: KeyValue) -> Versioned[R]:
        record = decode(kv.key, kv.value)
        assert isinstance(record, self._cls)
        return Versioned(record, kv.mod_revision, kv.create_revision, kv.lease)

    async def create(self, record: R, *, lease: int = 0) -> Versioned[R]:
        """Store a new record; AlreadyExists if its key is taken."""
        rev = await self._backend.commit(
            [Put(self._key(record.key), encode(record), ABSENT, lease)]
        )
        return Versioned(record, rev, rev, lease)

    async def put(self, record: R, *, lease: int = 0) -> Versioned[R]:
        """Create or overwrite without a revision check (for owners of a key)."""
        rev = await self._backend.commit([Put(self._key(record.key), encode(record), ANY, lease)])
        current = await self._backend.get(self._key(record.key))
        created = current.create_revision if current and current.mod_revision == rev else rev
        return Versioned(record, rev, created, lease)

    async def update(self, record: R, revision: int, *, lease: int = 0) -> Versioned[R]:
        """Overwrite the record last seen at `revision`; Conflict if it moved on."""
        if revision <= 0:
            raise ValueError("update needs the revision the record was read at")
        rev = await self._backend.commit(
            [Put(self._key(record.key), encode(record), revision, lease)]
        )
        current = await self._backend.get(self._key(record.key))
        created = current.create_revision if current else rev
        return Versioned(record, rev, created, lease)

    async def get(self, key: str) -> Versioned[R]:
        kv = await self._backend.get(self._key(key))
        if kv is None:
            raise NotFound(f"{self.kind}/{key}")
        return self._wrap(kv)

    async def find(self, key: str) -> Versioned[R] | None:
        kv = await self._backend.get(self._key(key))
        return None if kv is None else self._wrap(kv)

    async def delete(self, key: str, revision: int | None = None) -> int:
        """Delete; NotFound if absent, Conflict if `revision` is given and stale."""
        return await self._backend.commit([Delete(self._key(key), revision)])

    async def list(self, prefix: str = "") -> list[Versioned[R]]:
        items, _ = await self._backend.list(self._key(prefix))
        return [self._wrap(kv) for kv in items]

    async def list_page(self, prefix: str, start: str, limit: int) -> builtins.list[Versioned[R]]:
        """At most `limit` records whose keys start with `prefix`, from key `start` on."""
        items = await self._backend.list_page(self._key(prefix), self._key(start), limit)
        return [self._wrap(kv) for kv in items]


class Store:
    """The registry's state: one collection per record kind, leases, and the feed."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.clusters = Collection(backend, Cluster)
        self.links = Collection(backend, Link)
        self.exports = Collection(backend, ServiceExport)
        self.endpoints = Collection(backend, Endpoint)
        self.gateways = Collection(backend, Gateway)
        self.trust_domains = Collection(backend, TrustDomain)
        self.tokens = Collection(backend, ApiToken)
        self.join_tokens = Collection(backend, JoinToken)
        self.cas = Collection(backend, CaMaterial)
        self.events = Collection(backend, AuditEvent)
        self.rotations = Collection(backend, RootRotation)
        self.bundle_reports = Collection(backend, BundleReport)

    async def replace_endpoints(
        self,
        cluster: str,
        namespace: str,
        service: str,
        endpoints: Iterable[Endpoint],
        *,
        lease: int = 0,
        attempts: int = 5,
    ) -> int:
        """Atomically make `endpoints` the whole set for one service in one cluster.

        Stale endpoints are deleted and new ones written in one transaction, with
        every deletion conditioned on the revision read, so a concurrent writer
        makes this retry rather than lose an update.
        """
        wanted = list(endpoints)
        for ep in wanted:
            if (ep.cluster, ep.namespace, ep.service) != (cluster, namespace, service):
                raise ValueError(f"endpoint {ep.key} is not of {namespace}/{service}@{cluster}")
        prefix = storage_key(Endpoint.KIND, endpoint_prefix(namespace, service, cluster))
        new = {storage_key(Endpoint.KIND, ep.key): encode(ep) for ep in wanted}
        for _ in range(attempts):
            current, _ = await self.backend.list(prefix)
            ops: list[Op] = [Delete(kv.key, kv.mod_revision) for kv in current if kv.key not in new]
            have = {kv.key: kv for kv in current}
            for key, value in new.items():
                old = have.get(key)
                if old is not None and old.value == value and old.lease == lease:
                    continue
                ops.append(Put(key, value, old.mod_revision if old else ABSENT, lease))
            try:
                return await self.backend.commit(ops)
            except (Conflict, AlreadyExists, NotFound):
                continue
        raise Conflict(prefix, -1, None)

    async def commit(self, ops: Sequence[Op]) -> int:
        """A raw multi-key transaction (see `Backend.commit`)."""
        return await self.backend.commit(ops)

    async def grant_lease(self, ttl_seconds: float) -> int:
        return await self.backend.lease_grant(ttl_seconds)

    async def keepalive(self, lease: int) -> None:
        await self.backend.lease_keepalive(lease)

    async def revoke(self, lease: int) -> None:
        await self.backend.lease_revoke(lease)

    async def revision(self) -> int:
        return await self.backend.revision()

    async def compact(self, revision: int) -> None:
        await self.backend.compact(revision)

    async def watch(
        self, since: int | None = None, kind: str | None = None
    ) -> AsyncGenerator[FeedMessage, None]:
        """Typed change feed over every kind, or just `kind` (see `Backend.watch`)."""
        prefix = ROOT if kind is None else f"{ROOT}{kind}/"
        async for message in self.backend.watch(prefix, since):
            if isinstance(message, Snapshot):
                with gc_paused():
                    items = tuple(_versioned(kv) for kv in message.items)
                yield TypedSnapshot(items, message.revision, message.resync)
            elif isinstance(message, Changes):
                yield TypedChanges(message.revision, tuple(_change(e) for e in message.events))

    async def close(self) -> None:
        await self.backend.close()


def _change(event: Event) -> Change:
    kind, key = _split(event.key)
    if event.type == "delete" or event.value is None:
        return Change("delete", kind, key, None)
    return Change("put", kind, key, decode(event.key, event.value))
