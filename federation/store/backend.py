"""The raw key-value contract every store backend implements.

The registry's state is a flat, revisioned key space in the style of etcd's MVCC:
every committed transaction gets the next store-wide revision; every key remembers
the revision that created it and the one that last modified it; a change feed
replays committed transactions in revision order. SQL backends emulate this with a
revision counter and a change-log table; etcd provides it natively.

Keeping the backend this small (get, list, commit, leases, watch, compact) is what
lets one contract suite (tests/store/) hold SQLite, PostgreSQL and etcd to the
same semantics. Typed records live one layer up, in `federation.store.typed`.
"""

from __future__ import annotations

import abc
import builtins
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True, slots=True)
class KeyValue:
    """One live key: its value and MVCC revisions (etcd's mvccpb.KeyValue)."""

    key: str
    value: bytes
    create_revision: int
    mod_revision: int
    lease: int = 0  # 0: not attached to a lease


# Expectation a write places on the key's current state, checked atomically:
ANY = None  # no check
ABSENT = 0  # the key must not exist (create)
# any positive int: the key's mod_revision must equal it (compare-and-swap)


@dataclass(frozen=True, slots=True)
class Put:
    """Write `value` at `key`. `expect` is ANY, ABSENT or a mod_revision."""

    key: str
    value: bytes
    expect: int | None = ANY
    lease: int = 0


@dataclass(frozen=True, slots=True)
class Delete:
    """Remove `key`. With `expect` a mod_revision, only if unchanged since.

    `must_exist` makes a missing key fail the transaction with NotFound.
    """

    key: str
    expect: int | None = ANY
    must_exist: bool = True


Op = Put | Delete


@dataclass(frozen=True, slots=True)
class Event:
    """One key's change inside a committed transaction."""

    type: Literal["put", "delete"]
    key: str
    value: bytes | None  # None for deletes
    mod_revision: int


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Every live key under the watched prefix as of `revision`.

    `resync` is true when the watcher asked for history that compaction removed:
    it must drop what it holds and start over from this snapshot.
    """

    items: tuple[KeyValue, ...]
    revision: int
    resync: bool = False


@dataclass(frozen=True, slots=True)
class Changes:
    """All events of one committed transaction (one revision), in commit order."""

    revision: int
    events: tuple[Event, ...]


WatchMessage = Snapshot | Changes


class Backend(abc.ABC):
    """A revisioned key-value store with leases and a change feed.

    Failures are reported with `federation.errors` exceptions only: `Conflict`,
    `AlreadyExists`, `NotFound` and `LeaseNotFound` for failed expectations,
    `StoreUnavailable` when the server cannot be reached, `StoreError` otherwise.
    """

    @abc.abstractmethod
    async def get(self, key: str) -> KeyValue | None:
        """The live key, or None."""

    @abc.abstractmethod
    async def list(self, prefix: str) -> tuple[list[KeyValue], int]:
        """Every live key starting with `prefix` (sorted by key) and the revision it reflects."""

    async def list_page(self, prefix: str, start: str, limit: int) -> builtins.list[KeyValue]:
        """At most `limit` live keys starting with `prefix`, from `start` (inclusive; at
        least `prefix`) in key order: one page of a list, read as a key range.

        This default filters `list`; backends override it with a ranged, limited read
        so a page costs what the page holds, not what the whole prefix holds.
        """
        items, _ = await self.list(prefix)
        return [kv for kv in items if kv.key >= start][:limit]

    @abc.abstractmethod
    async def commit(self, ops: Sequence[Op]) -> int:
        """Apply `ops` atomically: all or nothing. Returns the new store revision.

        Each op's expectation is checked first; the first one that fails raises
        (Conflict / AlreadyExists / NotFound / LeaseNotFound) and nothing is written.
        An empty `ops` is a no-op returning the current revision. A key may appear
        at most once per transaction.
        """

    @abc.abstractmethod
    async def revision(self) -> int:
        """The store's current revision."""

    @abc.abstractmethod
    async def lease_grant(self, ttl_seconds: float) -> int:
        """A new lease that expires `ttl_seconds` from now unless kept alive."""

    @abc.abstractmethod
    async def lease_keepalive(self, lease: int) -> None:
        """Push the lease's expiry to a full TTL from now; LeaseNotFound if gone."""

    @abc.abstractmethod
    async def lease_renew_all(self) -> int:
        """Give every lease under this store a full TTL from now; returns how many.

        For a process that takes over keeping leases alive (the registry at start):
        a lease must not expire because its keeper restarted, only because its
        holder went away — etcd renews leases on a leader change for the same reason.
        """

    @abc.abstractmethod
    async def lease_revoke(self, lease: int) -> None:
        """End the lease now, deleting every key attached to it (one revision)."""

    @abc.abstractmethod
    def watch(self, prefix: str, since: int | None = None) -> AsyncGenerator[WatchMessage, None]:
        """The change feed under `prefix`.

        With `since` None: a `Snapshot`, then every later `Changes` in revision order.
        With `since` a revision: every `Changes` after it (no snapshot); if that
        history was compacted, a `Snapshot(resync=True)` first, then what follows it.
        No revision is skipped or delivered twice, across server restarts and
        reconnects included. The iterator runs until the caller stops iterating or
        the backend is closed.
        """

    @abc.abstractmethod
    async def compact(self, revision: int) -> None:
        """Discard change history at and before `revision` (keys stay)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release connections and background tasks; open watches end."""


def prefix_end(prefix: str) -> str:
    """The smallest string greater than every string starting with `prefix`.

    etcd's range_end convention: increment the last character; "" means "no end".
    """
    if not prefix:
        return ""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)
