"""One Watch stream: the store's change feed through a `Projector`, with resume and heartbeats.

Why this module exists: the I/O around the pure projection. It opens the store
feed, decides how to start (fresh snapshot, or resume from the watcher's last
revision), turns views and deltas into messages, and sends a heartbeat with the
current revision whenever the watcher has heard nothing for a while.

Resuming from revision R without knowing what the watcher holds:
 1. list the store at revision L (the current state) and project it;
 2. read the feed's history after R up to L, collecting only which items it
    touched (the listing already contains their effects);
 3. send those items as they are at L (upsert if present, remove if absent) as one
    delta at revision L; if a link changed, anything may have, so send a snapshot.
Then continue live. If the history was compacted the store says so and the
watcher gets a snapshot; if the history never reaches L (possible on an etcd
shared with other applications) a snapshot is sent after `catchup_timeout`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

from federation.controlplane import meshfed_pb2 as pb
from federation.controlplane.convert import (
    bundle_to_pb,
    gateway_to_pb,
    import_to_pb,
    link_to_pb,
    service_ref,
)
from federation.controlplane.projection import (
    KINDS,
    Delta,
    Projector,
    Touched,
    View,
    items,
    touched_by,
)
from federation.controlplane.settings import Settings
from federation.model import Record
from federation.store import Store
from federation.store.typed import ROOT, FeedMessage, TypedChanges, TypedSnapshot, decode

# Feed messages buffered between the store and a slow watcher; beyond this the
# reader waits, and the store's own feed buffers (one revision per entry).
FEED_BUFFER = 1024


def _state(view: View) -> pb.WatchState:
    return pb.WatchState(
        imports=[import_to_pb(i) for i in view.imports.values()],
        links=[link_to_pb(x) for x in view.links.values()],
        gateways=[gateway_to_pb(g) for g in view.gateways.values()],
        bundles=[bundle_to_pb(b) for b in view.bundles.values()],
        exports=[import_to_pb(e) for e in view.exports.values()],
    )


def snapshot_event(view: View, revision: int) -> pb.WatchEvent:
    return pb.WatchEvent(revision=revision, snapshot=_state(view))


def delta_event(delta: Delta, revision: int) -> pb.WatchEvent:
    removed = delta.removed
    return pb.WatchEvent(
        revision=revision,
        delta=pb.WatchDelta(
            upserted=_state(delta.upserted),
            removed=pb.WatchRemovals(
                imports=[service_ref(k) for k in removed.imports],
                links=[pb.LinkRef(a=a, b=b) for a, b in (k.split("/", 1) for k in removed.links)],
                gateways=list(removed.gateways),
                bundles=list(removed.bundles),
                exports=[service_ref(k) for k in removed.exports],
            ),
        ),
    )


def heartbeat_event(revision: int) -> pb.WatchEvent:
    return pb.WatchEvent(revision=revision, heartbeat=pb.Heartbeat())


def _records(snapshot: TypedSnapshot) -> list[Record]:
    return [v.record for v in snapshot.items if v.record.KIND in KINDS]


async def _listing(store: Store) -> tuple[list[Record], int]:
    """Every record a view is made of, at one revision."""
    kvs, revision = await store.backend.list(ROOT)
    wanted = tuple(f"{ROOT}{kind}/" for kind in KINDS)
    return [decode(kv.key, kv.value) for kv in kvs if kv.key.startswith(wanted)], revision


class WatchStream:
    """The messages of one Watch call for `cluster`."""

    def __init__(self, store: Store, cluster: str, settings: Settings) -> None:
        self.store = store
        self.cluster = cluster
        self.settings = settings
        self.revision = 0
        self.projector = Projector(cluster)
        self._queue: asyncio.Queue[FeedMessage | BaseException] = asyncio.Queue(FEED_BUFFER)

    async def _read(self, since: int | None) -> None:
        try:
            async for message in self.store.watch(since=since):
                await self._queue.put(message)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # handed to the stream, which fails with it
            await self._queue.put(exc)

    async def _next(self, timeout: float) -> FeedMessage | None:
        """The next feed message, or None after `timeout` seconds of silence."""
        try:
            item = await asyncio.wait_for(self._queue.get(), timeout)
        except TimeoutError:
            return None
        if isinstance(item, BaseException):
            raise item
        return item

    def _reset(self, snapshot: TypedSnapshot) -> pb.WatchEvent:
        self.projector = Projector(self.cluster, _records(snapshot))
        self.revision = snapshot.revision
        return snapshot_event(self.projector.view, self.revision)

    async def events(self, since: int | None) -> AsyncIterator[pb.WatchEvent]:
        reader: asyncio.Task[None] | None = None
        try:
            listed = since is not None
            if since is not None:
                records, listed_at = await _listing(self.store)
                self.projector = Projector(self.cluster, records)
                self.revision = listed_at
                if since > listed_at:  # a revision from the future: a restored store
                    listed = False
                    since = None
            reader = asyncio.create_task(self._read(since), name=f"watch-{self.cluster}")
            if listed and since is not None and since < self.revision:
                async for event in self._catch_up(since):
                    yield event
            elif listed:  # nothing happened since the watcher's revision
                yield heartbeat_event(self.revision)
            async for event in self._live():
                yield event
        finally:
            if reader is not None:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader

    async def _catch_up(self, since: int) -> AsyncIterator[pb.WatchEvent]:
        """History (since, listed revision]: which items to resend (see the module doc)."""
        target = self.revision
        touched = Touched()
        deadline = time.monotonic() + self.settings.catchup_timeout
        while True:
            message = await self._next(max(0.0, deadline - time.monotonic()))
            if message is None:  # history never reached the listing: resend everything
                yield snapshot_event(self.projector.view, target)
                return
            if isinstance(message, TypedSnapshot):  # compacted: start over from it
                yield self._reset(message)
                return
            if message.revision <= target:
                touched.update(touched_by(message.changes))
            if message.revision >= target:
                if touched.links:
                    yield snapshot_event(self.projector.view, target)
                else:
                    yield delta_event(items(self.projector.view, touched), target)
                if message.revision > target:
                    event = self._apply(message)
                    if event is not None:
                        yield event
                return

    def _apply(self, message: TypedChanges) -> pb.WatchEvent | None:
        if message.revision <= self.revision:
            return None  # already in the listing or snapshot this stream started from
        delta = self.projector.apply(message.changes)
        self.revision = message.revision
        return delta_event(delta, self.revision) if delta else None

    async def _live(self) -> AsyncIterator[pb.WatchEvent]:
        """Deltas as they come; a heartbeat whenever nothing was sent for `heartbeat` s
        (also while only other clusters' changes arrive, so the revision stays fresh)."""
        last_sent = time.monotonic()
        while True:
            wait = max(0.0, last_sent + self.settings.heartbeat - time.monotonic())
            message = await self._next(wait)
            event: pb.WatchEvent | None
            if message is None:
                event = heartbeat_event(self.revision)
            elif isinstance(message, TypedSnapshot):
                event = self._reset(message)
            else:
                event = self._apply(message)
                if event is None and time.monotonic() - last_sent >= self.settings.heartbeat:
                    event = heartbeat_event(self.revision)
            if event is not None:
                yield event
                last_sent = time.monotonic()
