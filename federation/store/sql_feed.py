"""Fan-out of the SQL change log to any number of in-process watchers.

One poller per backend instance reads the change log once and hands each committed
revision to every subscriber, so 100 watchers cost one query, not 100. The poller
wakes at once when this process commits, and otherwise every `poll_interval`
seconds to pick up other processes' commits (several registries on one database).

Handoff without gaps or duplicates: a subscriber registers at the poller's position
P under the lock; the poller only hands it revisions above P; whatever the
subscriber needs at or below P it reads from the database itself (history or a
snapshot), skipping queued revisions its snapshot already covers.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from federation.store.backend import Event

Batch = tuple[int, tuple[Event, ...]]
# Fetches (revision, compact_revision) and the batches in (after, revision].
Fetch = Callable[[int], Awaitable[tuple[int, int, list[Batch]]]]


class Resync:
    """Queue marker: history this subscriber needed was compacted before delivery."""


@dataclass(eq=False)
class Subscriber:
    prefix: str
    queue: asyncio.Queue[Batch | Resync | None] = field(default_factory=asyncio.Queue)


class FeedHub:
    """Polls the change log and distributes each revision to subscribers."""

    def __init__(self, fetch: Fetch, poll_interval: float) -> None:
        self._fetch = fetch
        self._poll_interval = poll_interval
        self._subscribers: set[Subscriber] = set()
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._position: int | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    async def subscribe(
        self, prefix: str, current_revision: Callable[[], Awaitable[int]]
    ) -> tuple[Subscriber, int]:
        """Register a subscriber; returns it and the position P it will continue after."""
        async with self._lock:
            if self._position is None:
                self._position = await current_revision()
            sub = Subscriber(prefix)
            self._subscribers.add(sub)
            if self._task is None:
                self._task = asyncio.create_task(self._run(), name="meshfed-sql-feed")
            return sub, self._position

    def unsubscribe(self, sub: Subscriber) -> None:
        self._subscribers.discard(sub)

    def poke(self) -> None:
        """A local commit happened: poll now instead of at the next tick."""
        self._wake.set()

    async def _run(self) -> None:
        while not self._closed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._poll_interval)
            self._wake.clear()
            try:
                await self._poll()
            except asyncio.CancelledError:
                raise
            except Exception:  # the database hiccuped: try again next tick
                await asyncio.sleep(self._poll_interval)

    async def _poll(self) -> None:
        async with self._lock:
            assert self._position is not None
            revision, compacted, batches = await self._fetch(self._position)
            if revision <= self._position:
                return
            if self._position < compacted:
                for sub in self._subscribers:
                    sub.queue.put_nowait(Resync())
            else:
                for batch in batches:
                    for sub in self._subscribers:
                        sub.queue.put_nowait(batch)
            self._position = revision

    async def close(self) -> None:
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for sub in self._subscribers:
            sub.queue.put_nowait(None)
        self._subscribers.clear()
