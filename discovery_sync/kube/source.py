"""The Kubernetes source shell: informers in, exported services out.

Three informers (Services, EndpointSlices, MCS ServiceExports) feed one queue;
one dispatcher applies their events to its caches and, once all three have
listed and the queue is drained, re-runs the pure `sources.kube.translate` and
hands the result to `on_change` when it differs from the last one. It also keeps
each ServiceExport's status conditions (Valid from the translation; Ready and
Conflict from the agent through `set_conditions`), writing only what changed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from discovery_sync.errors import KubeConflict, KubeError
from discovery_sync.kube import conditions
from discovery_sync.kube.api import (
    ENDPOINT_SLICES,
    SERVICE_EXPORTS,
    SERVICES,
    WATCH_TIMEOUT,
    KubeApi,
    Obj,
    Resource,
)
from discovery_sync.kube.informer import Changed, Informer, KubeEvent, ObjKey, Synced
from discovery_sync.sources.kube import (
    SERVICE_NAME_LABEL,
    NamespaceFilter,
    Translation,
    translate,
)
from discovery_sync.types import LocalService
from federation.model import Condition, ServiceKey

log = logging.getLogger(__name__)

Exports = Mapping[ServiceKey, LocalService]


class KubeSource:
    def __init__(
        self,
        api: KubeApi,
        on_change: Callable[[Exports], Awaitable[None]],
        *,
        cluster: str,
        default_zone: str,
        namespaces: NamespaceFilter | None = None,
        watch_timeout: int = WATCH_TIMEOUT,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.api = api
        self.on_change = on_change
        self.cluster = cluster
        self.default_zone = default_zone
        self.namespaces = namespaces = namespaces or NamespaceFilter()
        self.clock = clock
        self.queue: asyncio.Queue[KubeEvent] = asyncio.Queue()
        ns = next(iter(namespaces.include)) if len(namespaces.include) == 1 else None
        self.informers = [
            Informer(api, res, self.queue, namespace=ns, watch_timeout=watch_timeout)
            for res in (SERVICES, ENDPOINT_SLICES, SERVICE_EXPORTS)
        ]
        self.cache: dict[Resource, dict[ObjKey, Obj]] = {}
        self.current: Exports | None = None
        self.translation: Translation | None = None
        self.extra: dict[tuple[str, str], list[Condition]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._status_lock = asyncio.Lock()
        self.dirty: set[ObjKey] | None = None  # services to re-translate; None: all

    async def run(self) -> None:
        self._tasks = [asyncio.create_task(i.run()) for i in self.informers]
        try:
            while True:
                event = await self.queue.get()
                self._absorb(event)
                while not self.queue.empty():
                    self._absorb(self.queue.get_nowait())
                if len(self.cache) == len(self.informers):
                    await self._recompute()
        finally:
            self.stop()

    def stop(self) -> None:
        for informer in self.informers:
            informer.stop()
        for task in self._tasks:
            task.cancel()

    def _absorb(self, event: KubeEvent) -> None:
        """Apply one event to the caches and note which services it may change."""
        if isinstance(event, Synced):
            self.cache[event.resource] = dict(event.objects)
            self.dirty = None  # a (re)list: translate everything
            return
        assert isinstance(event, Changed)
        bucket = self.cache.setdefault(event.resource, {})
        old = bucket.get(event.key)
        if event.type == "DELETED":
            bucket.pop(event.key, None)
        else:
            bucket[event.key] = event.obj
        if self.dirty is None:
            return
        if event.resource == ENDPOINT_SLICES:
            for obj in (old, event.obj):
                owner = _labels(obj).get(SERVICE_NAME_LABEL) if obj else None
                if isinstance(owner, str):
                    self.dirty.add((event.key[0], owner))
        elif not (
            event.resource == SERVICE_EXPORTS
            and event.type == "MODIFIED"
            and old
            and _same_but_status(old, event.obj)
        ):
            self.dirty.add(event.key)  # a status-only change (ours) changes nothing

    async def _recompute(self) -> None:
        dirty, self.dirty = self.dirty, set()
        common = {
            "cluster": self.cluster,
            "default_zone": self.default_zone,
            "now": self.clock(),
            "namespaces": self.namespaces,
        }
        if dirty is None or self.translation is None:
            result = translate(
                self.cache[SERVICES].values(),
                self.cache[ENDPOINT_SLICES].values(),
                self.cache[SERVICE_EXPORTS].values(),
                **common,  # type: ignore[arg-type]
            )
            status_keys: set[ObjKey] | None = None
        elif not dirty:
            return
        else:  # translate only the services the events touched: O(change), not O(cluster)
            part = translate(
                [o for k, o in self.cache[SERVICES].items() if k in dirty],
                [o for o in self.cache[ENDPOINT_SLICES].values() if _owner(o) in dirty],
                [o for k, o in self.cache[SERVICE_EXPORTS].items() if k in dirty],
                **common,  # type: ignore[arg-type]
            )
            assert self.current is not None
            services = {k: v for k, v in self.current.items() if (k.namespace, k.name) not in dirty}
            services.update(part.services)
            validity = {k: v for k, v in self.translation.validity.items() if k not in dirty}
            validity.update(part.validity)
            result = Translation(services, part.problems, validity)
            status_keys = dirty
        for problem in result.problems:
            log.warning("not exported: %s", problem)
        self.translation = result
        if result.services != self.current:
            self.current = result.services
            await self.on_change(result.services)
        await self.write_status(status_keys)

    async def set_conditions(self, extra: Mapping[tuple[str, str], list[Condition]]) -> None:
        """Ready/Conflict conditions decided by the agent, written with Valid."""
        changed = {k for k in set(extra) | set(self.extra) if extra.get(k) != self.extra.get(k)}
        self.extra = {k: list(v) for k, v in extra.items()}
        await self.write_status(changed)

    async def write_status(self, keys: set[ObjKey] | None = None) -> None:
        """Write the conditions of the ServiceExports named by `keys` (None: all)."""
        async with self._status_lock:
            if self.translation is None:
                return
            for key in list(self.cache.get(SERVICE_EXPORTS, {})):
                if keys is None or key in keys:
                    await self._write_one(key, retry=True)

    async def _write_one(self, key: ObjKey, *, retry: bool) -> None:
        assert self.translation is not None
        obj = self.cache[SERVICE_EXPORTS].get(key)
        if obj is None:
            return
        want = [c for c in [self.translation.validity.get(key)] if c is not None]
        want += self.extra.get(key, [])
        existing = (obj.get("status") or {}).get("conditions") or []
        merged = conditions.merge(existing, want)
        if merged is None:
            return
        body = dict(obj, status={**(obj.get("status") or {}), "conditions": merged})
        try:
            updated = await asyncio.to_thread(
                self.api.replace_status, SERVICE_EXPORTS, key[0], key[1], body
            )
        except KubeConflict:
            if not retry:
                return
            try:  # our copy was stale: read the current one and merge again
                fresh = await asyncio.to_thread(self.api.get, SERVICE_EXPORTS, *key)
            except KubeError:
                return
            self.cache[SERVICE_EXPORTS][key] = fresh
            await self._write_one(key, retry=False)
            return
        except KubeError as err:  # e.g. deleted meanwhile: the watch will tell
            log.info("ServiceExport %s/%s status not written: %s", *key, err)
            return
        self.cache[SERVICE_EXPORTS][key] = updated


def _labels(obj: Obj) -> Mapping[str, Any]:
    labels = (obj.get("metadata") or {}).get("labels")
    return labels if isinstance(labels, Mapping) else {}


def _owner(slice_: Obj) -> ObjKey:
    ns = (slice_.get("metadata") or {}).get("namespace", "")
    return (str(ns), str(_labels(slice_).get(SERVICE_NAME_LABEL, "")))


_VOLATILE = ("resourceVersion", "generation", "managedFields")


def _same_but_status(old: Obj, new: Obj) -> bool:
    """Equal apart from status and the fields the server bumps on every write."""

    def strip(obj: Obj) -> Obj:
        meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k not in _VOLATILE}
        return {**{k: v for k, v in obj.items() if k != "status"}, "metadata": meta}

    return strip(old) == strip(new)
