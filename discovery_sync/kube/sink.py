"""The Kubernetes sink: makes the API server hold the MCS objects for a view.

It keeps its own picture of the meshfed-managed ServiceImports and EndpointSlices
(listed by the `app.kubernetes.io/managed-by=meshfed` label, then updated from
each write's response), so applying a view costs only the writes `plan.diff`
asks for and applying the same view twice writes nothing. Until the first view
arrives it touches nothing: an agent that cannot reach the registry keeps what it
wrote. The first view after start sweeps orphans (managed objects the view no
longer names); a periodic, jittered resync relists and repairs drift (someone
edited or deleted a managed object) and brings imports into namespaces created
since (MCS namespace sameness: meshfed never creates namespaces). A write that
races (409, 404) refreshes that object and is retried once; other failures are
counted and left to the resync.
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass, replace

from discovery_sync.backoff import jittered
from discovery_sync.errors import KubeConflict, KubeError
from discovery_sync.kube import plan
from discovery_sync.kube.api import ENDPOINT_SLICES, SERVICE_IMPORTS, KubeApi, Obj, Resource
from discovery_sync.types import ImportView
from federation.model import ServiceKey

log = logging.getLogger(__name__)

RESYNC_PERIOD = 300.0  # seconds; like a controller-runtime SyncPeriod, jittered +/-20 %


@dataclass
class SinkStats:
    creates: int = 0
    replaces: int = 0
    deletes: int = 0
    status_writes: int = 0
    conflicts: int = 0
    failures: int = 0
    resyncs: int = 0
    missing_namespace: int = 0


class KubeSink:
    def __init__(
        self,
        api: KubeApi,
        targets: plan.SliceTargets,
        *,
        resync_period: float = RESYNC_PERIOD,
        rng: random.Random | None = None,
    ) -> None:
        self.api = api
        self.targets = targets
        self.resync_period = resync_period
        self.rng = rng or random.Random()
        self.stats = SinkStats()
        self._have: dict[Resource, dict[plan.ObjKey, Obj]] = {}
        self._view: ImportView | None = None
        self._applied: tuple[ImportView, plan.SliceTargets] | None = None
        self._lock = asyncio.Lock()

    async def _relist(self) -> None:
        for res in (SERVICE_IMPORTS, ENDPOINT_SLICES):
            items, _ = await asyncio.to_thread(self.api.list, res, None, plan.MANAGED_SELECTOR)
            self._have[res] = plan.managed(items)

    async def apply(self, view: ImportView) -> None:
        """Make the cluster hold `view` (and sweep orphans on the first call)."""
        async with self._lock:
            self._view = view
            full = not self._have
            if full:
                await self._relist()
            await self._apply(view, full=full)

    async def resync(self) -> None:
        """Relist what meshfed manages and re-apply the last view (repairs drift)."""
        async with self._lock:
            if self._view is None:
                return
            self.stats.resyncs += 1
            await self._relist()
            await self._apply(self._view, full=True)

    async def run_resync(self) -> None:
        while True:
            await asyncio.sleep(jittered(self.resync_period, self.rng))
            try:
                await self.resync()
            except KubeError as err:
                log.warning("resync failed: %s", err)

    def _changed(self, view: ImportView, full: bool) -> set[ServiceKey] | None:
        """Services whose objects may differ from the last applied view (None: all)."""
        last = self._applied
        if full or last is None or last[0].clusters != view.clusters or last[1] != self.targets:
            return None
        return {
            k
            for k in set(view.services) | set(last[0].services)
            if view.services.get(k) != last[0].services.get(k)
        }

    async def _apply(self, view: ImportView, *, full: bool = False) -> None:
        keys = self._changed(view, full)
        have_imports = self._have.get(SERVICE_IMPORTS, {})
        have_slices = self._have.get(ENDPOINT_SLICES, {})
        if keys is not None:  # one changed service costs O(its objects), not O(cluster)
            if not keys:
                return
            names = {(k.namespace, k.name) for k in keys}
            view = replace(view, services={k: s for k, s in view.services.items() if k in keys})
            have_imports = {k: o for k, o in have_imports.items() if k in names}
            have_slices = {k: o for k, o in have_slices.items() if _service_of(o) in names}
        want = plan.desired(view, self.targets)
        # Imports first, so a slice never names a service that has no import yet;
        # deletions of slices before their import, for the same reason.
        import_writes = plan.diff(want.imports, have_imports)
        slice_writes = plan.diff(want.slices, have_slices)
        for w in [x for x in import_writes if x.verb != "delete"]:
            await self._write(SERVICE_IMPORTS, w)
        for key, status in want.import_status.items():
            await self._status(key, status)
        for w in slice_writes:
            await self._write(ENDPOINT_SLICES, w)
        for w in [x for x in import_writes if x.verb == "delete"]:
            await self._write(SERVICE_IMPORTS, w)
        self._applied = (self._view or view, self.targets)

    async def _write(self, res: Resource, w: plan.Write, retry: bool = True) -> None:
        have = self._have.setdefault(res, {})
        ns, name = w.key
        try:
            if w.verb == "create":
                assert w.body is not None
                have[w.key] = await asyncio.to_thread(self.api.create, res, ns, w.body)
                self.stats.creates += 1
            elif w.verb == "replace":
                assert w.body is not None
                have[w.key] = await asyncio.to_thread(self.api.replace, res, ns, name, w.body)
                self.stats.replaces += 1
            else:
                await asyncio.to_thread(self.api.delete, res, ns, name)
                have.pop(w.key, None)
                self.stats.deletes += 1
        except KubeError as err:
            if err.status == 404 and w.verb == "delete":
                have.pop(w.key, None)  # already gone: the goal is reached
                return
            if err.status == 404 and w.verb == "create":
                # MCS namespace sameness: no import into a namespace the cluster lacks;
                # the resync creates it once the namespace exists.
                self.stats.missing_namespace += 1
                log.info("%s %s/%s waits for namespace %s", res.kind, ns, name, ns)
                return
            if retry and (isinstance(err, KubeConflict) or err.status == 404):
                self.stats.conflicts += 1
                await self._refresh(res, w)
                return
            self.stats.failures += 1
            log.warning("%s %s %s/%s failed: %s", w.verb, res.kind, ns, name, err)

    async def _refresh(self, res: Resource, w: plan.Write) -> None:
        """Someone else wrote the object: read it back and redo the diff for it."""
        items, _ = await asyncio.to_thread(self.api.list, res, w.key[0], plan.MANAGED_SELECTOR)
        current = plan.managed(items).get(w.key)
        have = self._have.setdefault(res, {})
        if current is None:
            have.pop(w.key, None)
        else:
            have[w.key] = current
        if w.body is None:
            want = {}
        else:
            want = {w.key: {k: v for k, v in w.body.items()}}
            want[w.key]["metadata"] = {
                k: v for k, v in w.body["metadata"].items() if k != "resourceVersion"
            }
        current_only = {w.key: current} if current is not None else {}
        for again in plan.diff(want, current_only):
            await self._write(res, again, retry=False)

    async def _status(self, key: plan.ObjKey, status: Obj) -> None:
        current = self._have.get(SERVICE_IMPORTS, {}).get(key)
        if current is None or plan.normalize(current.get("status")) == plan.normalize(status):
            return
        body = dict(current, status=status)
        try:
            self._have[SERVICE_IMPORTS][key] = await asyncio.to_thread(
                self.api.replace_status, SERVICE_IMPORTS, key[0], key[1], body
            )
            self.stats.status_writes += 1
        except KubeError as err:
            self.stats.failures += 1
            log.info("status of ServiceImport %s/%s not written: %s", *key, err)


def _service_of(obj: Obj) -> plan.ObjKey:
    meta = obj.get("metadata") or {}
    labels = meta.get("labels") or {}
    return (str(meta.get("namespace", "")), str(labels.get(plan.SERVICE_NAME_LABEL, "")))
