"""The synchronous heart of the SQL backends: one function per store operation.

Each function takes an open SQLAlchemy `Connection` inside a transaction the
caller began, so the async shell (`sql.py`) decides threads and engines while the
revision bookkeeping lives here, in one place, testable on its own.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.engine import Connection

from federation.errors import AlreadyExists, Conflict, LeaseNotFound, NotFound, StoreError
from federation.store.backend import ABSENT, Event, KeyValue, Op, Put, prefix_end
from federation.store.gcpause import gc_paused
from federation.store.sql_schema import changes, leases, meta, records


def lock_revision(conn: Connection) -> tuple[int, int]:
    """Lock the meta row (PostgreSQL FOR UPDATE; SQLite already holds the write lock)."""
    row = conn.execute(
        select(meta.c.revision, meta.c.compact_revision).where(meta.c.id == 1).with_for_update()
    ).one()
    return int(row.revision), int(row.compact_revision)


def read_revision(conn: Connection) -> tuple[int, int]:
    row = conn.execute(select(meta.c.revision, meta.c.compact_revision)).one()
    return int(row.revision), int(row.compact_revision)


def _kv(row: object) -> KeyValue:
    return KeyValue(
        row.key.decode(),  # type: ignore[attr-defined]
        bytes(row.value),  # type: ignore[attr-defined]
        int(row.create_revision),  # type: ignore[attr-defined]
        int(row.mod_revision),  # type: ignore[attr-defined]
        int(row.lease),  # type: ignore[attr-defined]
    )


def get(conn: Connection, key: str) -> KeyValue | None:
    row = conn.execute(select(records).where(records.c.key == key.encode())).first()
    return None if row is None else _kv(row)


def list_prefix(conn: Connection, prefix: str) -> tuple[list[KeyValue], int]:
    """Live keys under `prefix` and the revision, from one transaction's snapshot.

    Only the needed columns, unpacked straight into KeyValue: a watcher's
    snapshot of 100,000 endpoints is read here (docs/performance.md).
    """
    revision, _ = read_revision(conn)
    query = select(
        records.c.key,
        records.c.value,
        records.c.create_revision,
        records.c.mod_revision,
        records.c.lease,
    ).order_by(records.c.key)
    if prefix:
        query = query.where(records.c.key >= prefix.encode())
        query = query.where(records.c.key < prefix_end(prefix).encode())
    rows = conn.execute(query)
    with gc_paused():
        items = [KeyValue(k.decode(), bytes(v), c, m, lease) for k, v, c, m, lease in rows]
    return items, revision


def list_page(conn: Connection, prefix: str, start: str, limit: int) -> list[KeyValue]:
    """At most `limit` live keys under `prefix` from `start` on, in key order (an index
    range scan on the primary key)."""
    query = (
        select(
            records.c.key,
            records.c.value,
            records.c.create_revision,
            records.c.mod_revision,
            records.c.lease,
        )
        .where(records.c.key >= max(start, prefix).encode())
        .order_by(records.c.key)
        .limit(limit)
    )
    if prefix:
        query = query.where(records.c.key < prefix_end(prefix).encode())
    rows = conn.execute(query)
    return [KeyValue(k.decode(), bytes(v), c, m, lease) for k, v, c, m, lease in rows]


def _check(op: Op, current: KeyValue | None) -> None:
    if isinstance(op, Put):
        if op.expect == ABSENT and current is not None:
            raise AlreadyExists(op.key)
        if (
            op.expect is not None
            and op.expect > 0
            and (current is None or current.mod_revision != op.expect)
        ):
            raise Conflict(op.key, op.expect, current.mod_revision if current else None)
    else:
        if current is None and (op.must_exist or (op.expect is not None and op.expect > 0)):
            if op.expect is not None and op.expect > 0:
                raise Conflict(op.key, op.expect, None)
            raise NotFound(op.key)
        expect = op.expect
        if current is not None and expect is not None and 0 < expect != current.mod_revision:
            raise Conflict(op.key, expect, current.mod_revision)


def commit(conn: Connection, ops: Sequence[Op], now: float) -> tuple[int, list[Event]]:
    """Check every expectation, then apply all ops at one new revision."""
    revision, _ = lock_revision(conn)
    if not ops:
        return revision, []
    keys = [op.key for op in ops]
    if len(set(keys)) != len(keys):
        raise StoreError("a key appears twice in one transaction")
    rows = conn.execute(select(records).where(records.c.key.in_([k.encode() for k in keys])))
    current = {kv.key: kv for kv in map(_kv, rows)}
    for op in ops:
        _check(op, current.get(op.key))
    _check_leases(conn, {op.lease for op in ops if isinstance(op, Put) and op.lease}, now)
    new_rev = revision + 1
    events: list[Event] = []
    for op in ops:
        old = current.get(op.key)
        if isinstance(op, Put):
            _put(conn, op, old, new_rev)
            events.append(Event("put", op.key, op.value, new_rev))
        elif old is not None:
            conn.execute(delete(records).where(records.c.key == op.key.encode()))
            events.append(Event("delete", op.key, None, new_rev))
    _finish(conn, new_rev, events)
    return (new_rev if events else revision), events


def _put(conn: Connection, op: Put, old: KeyValue | None, rev: int) -> None:
    values = {"value": op.value, "mod_revision": rev, "lease": op.lease}
    if old is None:
        conn.execute(insert(records).values(key=op.key.encode(), create_revision=rev, **values))
    else:
        conn.execute(update(records).where(records.c.key == op.key.encode()).values(**values))


def _check_leases(conn: Connection, wanted: set[int], now: float) -> None:
    if not wanted:
        return
    alive = {
        int(r.id)
        for r in conn.execute(
            select(leases.c.id).where(leases.c.id.in_(wanted), leases.c.expires_at > now)
        )
    }
    for lease in sorted(wanted - alive):
        raise LeaseNotFound(lease)


def _finish(conn: Connection, rev: int, events: list[Event]) -> None:
    """Append the events to the change log and publish the new revision."""
    if not events:
        return
    conn.execute(
        insert(changes),
        [
            {"revision": rev, "seq": i, "op": e.type, "key": e.key.encode(), "value": e.value}
            for i, e in enumerate(events)
        ],
    )
    conn.execute(update(meta).where(meta.c.id == 1).values(revision=rev))


def grant(conn: Connection, ttl: float, now: float) -> int:
    result = conn.execute(insert(leases).values(ttl=ttl, expires_at=now + ttl))
    key = result.inserted_primary_key
    if key is None:
        raise StoreError("lease insert returned no id")
    return int(key[0])


def lease_exists(conn: Connection, lease: int, now: float) -> bool:
    row = conn.execute(
        select(leases.c.id).where(leases.c.id == lease, leases.c.expires_at > now)
    ).first()
    return row is not None


def any_expired(conn: Connection, now: float) -> bool:
    """Cheap read-only probe so the sweeper takes the write lock only when needed."""
    return (
        conn.execute(select(leases.c.id).where(leases.c.expires_at <= now).limit(1)).first()
        is not None
    )


def renew_all(conn: Connection, now: float) -> int:
    """Every lease (expired ones too, not yet swept) gets a full TTL from `now`."""
    result = conn.execute(update(leases).values(expires_at=now + leases.c.ttl))
    return int(result.rowcount)


def keepalive(conn: Connection, lease: int, now: float) -> None:
    result = conn.execute(
        update(leases)
        .where(leases.c.id == lease, leases.c.expires_at > now)
        .values(expires_at=now + leases.c.ttl)
    )
    if result.rowcount == 0:
        raise LeaseNotFound(lease)


def expire(
    conn: Connection, lease_ids: Sequence[int] | None, now: float
) -> tuple[int, list[Event]]:
    """Delete the given leases (or every expired one) with their keys, at one revision."""
    revision, _ = lock_revision(conn)
    query = select(leases.c.id)
    if lease_ids is None:
        query = query.where(leases.c.expires_at <= now)
    else:
        query = query.where(leases.c.id.in_(list(lease_ids)))
    dead = [int(r.id) for r in conn.execute(query)]
    if not dead:
        return revision, []
    keys = [
        bytes(r.key)
        for r in conn.execute(
            select(records.c.key).where(records.c.lease.in_(dead)).order_by(records.c.key)
        )
    ]
    conn.execute(delete(records).where(records.c.lease.in_(dead)))
    conn.execute(delete(leases).where(leases.c.id.in_(dead)))
    new_rev = revision + 1
    events = [Event("delete", k.decode(), None, new_rev) for k in keys]
    _finish(conn, new_rev, events)
    return (new_rev if events else revision), events


def history(conn: Connection, after: int, upto: int) -> list[tuple[int, list[Event]]]:
    """Committed transactions with after < revision <= upto, grouped per revision."""
    rows = conn.execute(
        select(changes)
        .where(changes.c.revision > after, changes.c.revision <= upto)
        .order_by(changes.c.revision, changes.c.seq)
    )
    out: list[tuple[int, list[Event]]] = []
    for row in rows:
        rev = int(row.revision)
        value = None if row.value is None else bytes(row.value)
        event = Event("put" if row.op == "put" else "delete", bytes(row.key).decode(), value, rev)
        if out and out[-1][0] == rev:
            out[-1][1].append(event)
        else:
            out.append((rev, [event]))
    return out


def compact(conn: Connection, revision: int) -> None:
    current, compacted = lock_revision(conn)
    target = min(revision, current)
    if target <= compacted:
        return
    conn.execute(delete(changes).where(changes.c.revision <= target))
    conn.execute(update(meta).where(meta.c.id == 1).values(compact_revision=target))


def count_records(conn: Connection) -> int:
    return int(conn.execute(select(func.count()).select_from(records)).scalar_one())
