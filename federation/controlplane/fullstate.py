"""Planning a full-state report as a few store transactions. Pure.

Why this module exists: an agent's first ReportEndpoints message lists every
service its cluster exports. Written one service per transaction, each of the
thousand transactions wakes every watcher (docs/performance.md, Registry); written
as one transaction it would exceed what etcd accepts. This module turns the full
state and what the store holds for the cluster into a list of transactions, each
holding whole services only (a service's export and its endpoints change at one
revision, so a watcher never sees half of it), each within `MAX_TXN_OPS` and
`MAX_TXN_BYTES`, together covering exactly the upserts and removals. The stream
shell (`service.EndpointSession`) reads, calls `plan_full_state`, and commits.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from federation.controlplane.reports import ServiceWrite
from federation.model import Endpoint, ServiceExport, ServiceKey, endpoint_prefix
from federation.store.backend import ABSENT, Delete, KeyValue, Op, Put
from federation.store.typed import encode, storage_key

# Operations per transaction. etcd refuses a Txn with more than --max-txn-ops
# compares, success or failure ops (default 128). meshfed's installer raises it to
# 10000, but docs/store.md asks operators to raise it only if one service has more
# than ~120 endpoints in a cluster, so a stock etcd must keep working: 128. Every op
# planned here carries at most one compare (deletes use `must_exist=False` with an
# expected revision, which fails just the same on a missing key) and the etcd backend
# adds one failure read per op, so 128 ops stay within 128 of each. A single service
# larger than this is still written whole, in a transaction of its own, exactly as
# `Store.replace_endpoints` writes it (the limit docs/store.md already states).
MAX_TXN_OPS = 128
# Bytes per transaction, estimated by `op_bytes`: etcd's --max-request-bytes
# defaults to 1.5 MiB; a third of it leaves room for the key namespace prefix and
# gRPC framing. At ~300 bytes an endpoint, the op count binds first.
MAX_TXN_BYTES = 512 * 1024


@dataclass(frozen=True, slots=True)
class Held:
    """What the store holds for one service of the reporting cluster (raw)."""

    export: KeyValue | None = None
    endpoints: tuple[KeyValue, ...] = ()


@dataclass(frozen=True, slots=True)
class Txn:
    """One transaction: the whole change of each service in `services`."""

    services: tuple[ServiceKey, ...]
    ops: tuple[Op, ...]


def export_key(service: ServiceKey, cluster: str) -> str:
    return storage_key(ServiceExport.KIND, f"{service}/{cluster}")


def endpoints_prefix(service: ServiceKey, cluster: str) -> str:
    return storage_key(Endpoint.KIND, endpoint_prefix(service.namespace, service.name, cluster))


def op_bytes(op: Op) -> int:
    """A bound on what `op` adds to an etcd Txn request: the key travels in the
    compare, the request and the failure read; the value once; 32 bytes of framing."""
    value = len(op.value) if isinstance(op, Put) else 0
    return 3 * len(op.key.encode()) + value + 32


def _put(key: str, value: bytes, old: KeyValue | None, lease: int) -> Put | None:
    if old is not None and old.value == value and old.lease == lease:
        return None  # already so, and on this stream's lease
    return Put(key, value, old.mod_revision if old else ABSENT, lease)


def _delete(kv: KeyValue) -> Delete:
    # One compare: the expected revision fails on a missing key too (Conflict).
    return Delete(kv.key, kv.mod_revision, must_exist=False)


def service_ops(write: ServiceWrite | None, held: Held, lease: int) -> tuple[Op, ...]:
    """The ops that make the store hold `write` for one service (None: remove it),
    each conditioned on the revision read, so a concurrent writer makes them fail."""
    if write is None:
        gone = [_delete(kv) for kv in held.endpoints]
        return tuple(gone + ([_delete(held.export)] if held.export else []))
    wanted = {storage_key(Endpoint.KIND, ep.key): encode(ep) for ep in write.endpoints}
    have = {kv.key: kv for kv in held.endpoints}
    ops: list[Op | None] = [
        _put(storage_key(ServiceExport.KIND, write.export.key), encode(write.export),
             held.export, lease),
        *(_delete(kv) for kv in held.endpoints if kv.key not in wanted),
        *(_put(key, value, have.get(key), lease) for key, value in wanted.items()),
    ]  # fmt: skip
    return tuple(op for op in ops if op is not None)


def plan_full_state(
    writes: Sequence[ServiceWrite],
    held: Mapping[ServiceKey, Held],
    lease: int,
    *,
    max_ops: int = MAX_TXN_OPS,
    max_bytes: int = MAX_TXN_BYTES,
) -> list[Txn]:
    """The transactions that make the store hold exactly `writes` for the cluster.

    `held` maps every service the store holds for the cluster (and may map listed
    ones) to what it holds; a held service not in `writes` is removed. Removals
    come first, then the writes in their order; services whose ops are empty
    (already as reported) are left out. Services are packed greedily: a transaction
    closes when the next service would take it past `max_ops` or `max_bytes`; a
    service past either on its own gets a transaction to itself.
    """
    listed = {w.service for w in writes}
    removals = sorted((k for k in held if k not in listed), key=str)
    groups = [(k, service_ops(None, held[k], lease)) for k in removals]
    groups += [(w.service, service_ops(w, held.get(w.service, Held()), lease)) for w in writes]
    txns: list[Txn] = []
    services: list[ServiceKey] = []
    ops: list[Op] = []
    size = 0
    for key, group in groups:
        if not group:
            continue
        extra = sum(op_bytes(op) for op in group)
        if ops and (len(ops) + len(group) > max_ops or size + extra > max_bytes):
            txns.append(Txn(tuple(services), tuple(ops)))
            services, ops, size = [], [], 0
        services.append(key)
        ops.extend(group)
        size += extra
    if ops:
        txns.append(Txn(tuple(services), tuple(ops)))
    return txns
