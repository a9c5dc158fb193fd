"""List, then watch from the list's resourceVersion: the shell that keeps a cache.

The loop client-go's reflector and kopf run: list (following `continue`), emit
`Synced` with every object, watch from the list's resourceVersion with bookmarks
on (a bookmark moves the version forward without an object), emit `Changed` per
event; when the watch ends (server timeout) or the connection drops, watch again
from the last version seen after a backoff; on 410 Gone (the version was
compacted) list again. Events go to one asyncio queue, so a single dispatcher
sees the events of several informers in order per resource.

The blocking watch runs in a thread of its own; `stop` cuts its connection so
the thread returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from discovery_sync.backoff import Backoff
from discovery_sync.errors import Gone, KubeError
from discovery_sync.kube.api import WATCH_TIMEOUT, KubeApi, Obj, Resource

log = logging.getLogger(__name__)

ObjKey = tuple[str, str]  # (namespace, name)


def obj_key(obj: Mapping[str, Any]) -> ObjKey:
    meta = obj.get("metadata") or {}
    return (str(meta.get("namespace", "")), str(meta.get("name", "")))


@dataclass(frozen=True, slots=True)
class Synced:
    """A (re)list: `objects` replaces everything known of `resource`."""

    resource: Resource
    objects: Mapping[ObjKey, Obj]
    resource_version: str


@dataclass(frozen=True, slots=True)
class Changed:
    resource: Resource
    type: str  # ADDED, MODIFIED, DELETED
    obj: Obj = field(compare=False)

    @property
    def key(self) -> ObjKey:
        return obj_key(self.obj)


KubeEvent = Synced | Changed


@dataclass
class InformerStats:
    lists: int = 0
    watches: int = 0
    gone: int = 0
    errors: int = 0
    bookmarks: int = 0
    events: int = 0


class Informer:
    """Feeds `queue` with `Synced` and `Changed` events of one resource until stopped."""

    def __init__(
        self,
        api: KubeApi,
        resource: Resource,
        queue: asyncio.Queue[KubeEvent],
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        backoff: Backoff | None = None,
        watch_timeout: int = WATCH_TIMEOUT,
    ) -> None:
        self.api = api
        self.resource = resource
        self.queue = queue
        self.namespace = namespace
        self.label_selector = label_selector
        self.backoff = backoff or Backoff()
        self.watch_timeout = watch_timeout
        self.stats = InformerStats()
        self.resource_version = ""
        self._response: Any = None
        self._stopping = False

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._stopping:
            try:
                items, rv = await asyncio.to_thread(
                    self.api.list, self.resource, self.namespace, self.label_selector
                )
            except KubeError as err:
                self.stats.errors += 1
                log.warning("list %s failed: %s", self.resource.plural, err)
                await asyncio.sleep(self.backoff.next())
                continue
            self.stats.lists += 1
            self.resource_version = rv
            await self.queue.put(Synced(self.resource, {obj_key(o): o for o in items}, rv))
            while not self._stopping:
                try:
                    await self._in_thread(loop)
                    self.backoff.reset()  # a clean end (server timeout): watch again now
                except Gone:
                    self.stats.gone += 1
                    log.info(
                        "watch %s: version %s expired, relisting",
                        self.resource.plural,
                        self.resource_version,
                    )
                    break
                except KubeError as err:
                    if self._stopping:
                        return
                    self.stats.errors += 1
                    log.info(
                        "watch %s dropped (%s), resuming from %s",
                        self.resource.plural,
                        err,
                        self.resource_version,
                    )
                    await asyncio.sleep(self.backoff.next())

    async def _in_thread(self, loop: asyncio.AbstractEventLoop) -> None:
        """Run one watch in a thread of its own, not the loop's default executor.

        A watch holds its thread for minutes; a few informers would otherwise fill
        the default executor, which the loop also needs for `getaddrinfo`.
        """
        done: asyncio.Future[None] = loop.create_future()

        def settle(exc: BaseException | None) -> None:
            if done.done():
                return
            if exc is None:
                done.set_result(None)
            else:
                done.set_exception(exc)

        def target() -> None:
            try:
                self._pump(loop)
            except BaseException as exc:  # handed to the awaiting coroutine
                with contextlib.suppress(RuntimeError):  # the loop is closed
                    loop.call_soon_threadsafe(settle, exc)
                return
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(settle, None)

        name = f"watch-{self.resource.plural}"
        threading.Thread(target=target, name=name, daemon=True).start()
        await done

    def _pump(self, loop: asyncio.AbstractEventLoop) -> None:
        """Runs in a thread: one watch request, events handed to the loop in order."""
        self.stats.watches += 1
        for event in self.api.watch(
            self.resource,
            self.resource_version,
            namespace=self.namespace,
            label_selector=self.label_selector,
            timeout_seconds=self.watch_timeout,
            on_response=self._set_response,
        ):
            if self._stopping:
                return
            obj = event.get("object") or {}
            rv = str((obj.get("metadata") or {}).get("resourceVersion", ""))
            kind = event.get("type")
            if kind == "BOOKMARK":
                self.stats.bookmarks += 1
            elif kind in ("ADDED", "MODIFIED", "DELETED"):
                self.stats.events += 1
                ev = Changed(self.resource, str(kind), obj)
                loop.call_soon_threadsafe(self.queue.put_nowait, ev)  # unbounded queue
            if rv:
                self.resource_version = rv

    def _set_response(self, resp: Any) -> None:
        self._response = resp
        if self._stopping:
            self._abort()

    def _abort(self) -> None:
        resp = self._response
        if resp is None:
            return
        with contextlib.suppress(Exception):
            resp.shutdown()  # urllib3 >= 2.3: unblocks a read in another thread
        with contextlib.suppress(Exception):
            sock = getattr(getattr(resp, "connection", None), "sock", None)
            if sock is not None:
                sock.shutdown(socket.SHUT_RDWR)

    def stop(self) -> None:
        self._stopping = True
        self._abort()
