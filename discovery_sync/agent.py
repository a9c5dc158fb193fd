"""The sync agent: one cluster's exports to the registry, its imports back into it.

`meshfed agent` composes the parts: a source (Kubernetes informers or the static
file) publishes the cluster's exports; the reporter streams them to the registry
under a lease (full state first, then deltas; on any stream failure it reconnects
with backoff and starts over with the full state); `follow` keeps the cluster's
import view (resuming from the last revision, keeping the last view while the
registry is away); every new view goes to the sinks (Kubernetes MCS objects,
the imports file) and the DNS server. Joining and renewing the SVID (at half its
lifetime, or on a root rotation) is the mixin `agent_identity.AgentIdentity`;
`AgentConfig` and `read_ca` live in agent_config.py (re-exported here).

Nothing here deletes what was written when the registry is unreachable: sinks
only change on a new view, and a view only comes from the registry.

With leader election (`leader_elect`, the default with Kubernetes) several replicas
of one cluster's agent run and only the holder of the Lease `meshfed-agent-<cluster>`
writes: the export stream to the registry, ServiceImports and EndpointSlices,
ServiceExport conditions. A follower keeps its informers, its registry `Watch`, its
DNS answers and its imports file (local, per replica) warm, so taking over costs one
diff. Its Kubernetes client is fenced (`kube.lease.FencedApiClient`): a write is
refused unless the lease's renew deadline is still ahead, so losing the lease stops
writes at once, before the leader's tasks are even cancelled.

With Kubernetes the writer (the leader, or the only agent) also keeps the ConfigMap
`meshfed-registry-ca` in its namespace (`lease_namespace`, the install namespace)
holding the roots of its trust domain's bundle from the Watch
(`kube.registry_ca`), so a pod started after a root rotation's activate or retire
(a restart, a scale-up) verifies the registry with the roots it signs under now.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import Callable, Coroutine, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from discovery_sync.agent_config import AgentConfig as AgentConfig
from discovery_sync.agent_config import default_join_address as default_join_address
from discovery_sync.agent_config import read_ca as read_ca
from discovery_sync.agent_identity import AgentIdentity
from discovery_sync.backoff import Backoff
from discovery_sync.dns.server import DnsServer
from discovery_sync.dns.zone import compile_zone
from discovery_sync.errors import DiscoveryError, SourceError
from discovery_sync.imports_file import dump, write_atomic
from discovery_sync.ipam import parse_cidr
from discovery_sync.kube import conditions
from discovery_sync.kube.api import KubeApi, load_client
from discovery_sync.kube.lease import (
    FencedApiClient,
    LeaderElector,
    LeaseClient,
    default_identity,
    lease_name,
)
from discovery_sync.kube.registry_ca import RegistryCaWriter
from discovery_sync.kube.sink import KubeSink
from discovery_sync.kube.source import KubeSource
from discovery_sync.latest import Latest
from discovery_sync.registry_view import export_delta, import_view, slice_targets
from discovery_sync.sources.poll import watch_static
from discovery_sync.types import ImportView, LocalService
from federation.client import (
    ControlPlaneClient,
    ExportedService,
    RegistryUnavailable,
    WatchView,
)
from federation.errors import FederationError
from federation.model import ServiceKey

EXPORT_RETRY_MAX = 5.0  # seconds; a third of the registry's default 15 s lease TTL

log = logging.getLogger("meshfed.agent")

Exports = Mapping[ServiceKey, LocalService]


class Agent(AgentIdentity):
    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.cidr = parse_cidr(config.clusterset_cidr)
        self.exports: Latest[Exports] = Latest()
        self.view: ImportView | None = None
        self.watch_view = WatchView()
        self.reported: frozenset[ServiceKey] = frozenset()
        self.dns: DnsServer | None = None
        self.kube_api: KubeApi | None = None
        self.kube_source: KubeSource | None = None
        self.kube_sink: KubeSink | None = None
        self.registry_ca: RegistryCaWriter | None = None  # None on a follower
        self.elector: LeaderElector | None = None
        self.views_applied = 0
        self._gc_frozen = False
        # read by the admin endpoint (discovery_sync/admin.py): /healthz, /readyz, /metrics
        self.tasks: list[asyncio.Task[None]] = []
        self.registry: ControlPlaneClient | None = None  # set once joined
        self.export_stream_up = False  # a ReportEndpoints stream has sent its full state
        self.export_stream_restarts = 0  # export streams that ended in an error
        self.renewals = 0  # SVID renewals (half lifetime or root rotation)
        self._renew_wake = asyncio.Event()  # set when a root rotation asks for a renewal

    # --- composition ---------------------------------------------------------------

    async def run(self) -> None:
        cfg = self.config
        if cfg.dns_listen is not None:
            self.dns = DnsServer(compile_zone(ImportView(cfg.cluster), cfg.locality))
            await self.dns.start(*cfg.dns_listen)
        tasks: list[asyncio.Task[None]] = []
        self.tasks = tasks
        try:
            if cfg.static_file is None:
                self._connect_kube()
            tasks.append(asyncio.create_task(self._source(), name="source"))
            if self.elector is not None:
                tasks.append(asyncio.create_task(self.elector.run(), name="elect"))
            identity = await self._join()
            async with ControlPlaneClient(cfg.registry, identity) as registry:
                self.registry = registry
                tasks += [
                    asyncio.create_task(self._follow(registry), name="follow"),
                    asyncio.create_task(self._renew(registry), name="renew"),
                ]
                if self.elector is not None:  # report and resync only while leading
                    tasks.append(asyncio.create_task(self._leadership(registry), name="lead"))
                else:
                    tasks.append(asyncio.create_task(self._report(registry), name="report"))
                    if self.kube_sink is not None:
                        tasks.append(
                            asyncio.create_task(self.kube_sink.run_resync(), name="resync")
                        )
                    if self.registry_ca is not None:
                        tasks.append(
                            asyncio.create_task(self.registry_ca.run_resync(), name="ca-resync")
                        )
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
                for task in done:
                    task.result()  # a task only ends by failing: raise it
        finally:
            # the elector last: it releases the Lease once nothing of ours writes
            ordered = sorted(tasks, key=lambda task: task.get_name() == "elect")
            for task in ordered:
                if task.get_name() != "elect":
                    task.cancel()
            for task in ordered:
                if task.get_name() == "elect":
                    task.cancel()
                with contextlib.suppress(BaseException):
                    await task
            if self.kube_source is not None:
                self.kube_source.stop()
            if self.dns is not None:
                await self.dns.close()
            if self.kube_api is not None:
                self.kube_api.close()

    # --- exports -----------------------------------------------------------------------

    def _connect_kube(self) -> None:
        """The Kubernetes clients, the source, and the sink or the elector."""
        cfg = self.config
        api_client = load_client(None if cfg.in_cluster else cfg.kubeconfig, cfg.context)
        if cfg.leader_elect:
            leases = LeaseClient(
                api_client,
                cfg.lease_namespace,
                lease_name(cfg.cluster),
                timeout=cfg.lease_timing.renew_deadline,
            )
            self.elector = LeaderElector(
                leases, cfg.identity or default_identity(), cfg.lease_timing
            )
            # everything else writes through a client that refuses writes unless leading
            api_client = FencedApiClient(api_client.configuration, self.elector.fence)
        self.kube_api = KubeApi(api_client)
        if cfg.kube_sink and self.elector is None:
            self.kube_sink = self._new_sink()
        if self.elector is None:
            self.registry_ca = self._new_ca_writer()
        self.kube_source = _LeaderSource(
            self.kube_api,
            self.exports.publish,
            may_write=self._may_write,
            cluster=cfg.cluster,
            default_zone=cfg.locality.zone or "unknown",
            namespaces=cfg.namespaces,
        )

    def _new_sink(self) -> KubeSink:
        cfg = self.config
        assert self.kube_api is not None
        return KubeSink(
            self.kube_api,
            slice_targets(cfg.cluster, self.watch_view, cfg.egress_addresses, cfg.locality),
        )

    def _new_ca_writer(self) -> RegistryCaWriter | None:
        cfg = self.config
        if not cfg.registry_ca_configmap or self.kube_api is None:
            return None
        return RegistryCaWriter(self.kube_api, cfg.lease_namespace, cfg.trust_domain)

    def _may_write(self) -> bool:
        return self.elector is None or self.elector.is_leader()

    async def _source(self) -> None:
        cfg = self.config
        if cfg.static_file is not None:
            await watch_static(
                cfg.static_file,
                self.exports.publish,
                cluster=cfg.cluster,
                default_zone=cfg.locality.zone or "unknown",
            )
            return
        assert self.kube_source is not None
        await self.kube_source.run()

    # --- leadership ------------------------------------------------------------------

    async def _leadership(self, registry: ControlPlaneClient) -> None:
        """Lead while the elector says so; stop the leader's work the moment it does not."""
        assert self.elector is not None
        while True:
            await self.elector.wait_leading(True)
            term = asyncio.create_task(self._lead(registry), name="term")
            lost = asyncio.create_task(self.elector.wait_leading(False), name="lost")
            try:
                done, _ = await asyncio.wait({term, lost}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (term, lost):
                    task.cancel()
                    with contextlib.suppress(BaseException):
                        await task
            if term in done and not term.cancelled():
                term.result()  # the leader's work only ends by failing: raise it

    async def _lead(self, registry: ControlPlaneClient) -> None:
        """One term: catch the cluster up (conditions, imports), then report and resync."""
        sink = self._new_sink() if self.config.kube_sink else None
        self.kube_sink = sink  # a fresh sink relists, so a follower's gap is repaired
        ca_writer = self._new_ca_writer()  # reads the ConfigMap again at its first view
        self.registry_ca = ca_writer
        tasks = [asyncio.create_task(self._report(registry), name="report")]
        if sink is not None:
            tasks.append(asyncio.create_task(sink.run_resync(), name="resync"))
        if ca_writer is not None:
            tasks.append(asyncio.create_task(ca_writer.run_resync(), name="ca-resync"))
        try:
            if self.kube_source is not None:
                await self.kube_source.write_status(None)
            if ca_writer is not None and self.view is not None:
                await ca_writer.apply(self.watch_view.items.bundles)
            if sink is not None and self.view is not None:
                await self._apply_kube(sink, self.view)
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()
        finally:
            self.kube_sink = None
            self.registry_ca = None
            self.reported = frozenset()
            self.export_stream_up = False
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(BaseException):
                    await task

    async def _report(self, registry: ControlPlaneClient) -> None:
        # Re-report within a few seconds of the registry's return: the old stream's
        # lease (15 s) may already have expired during the outage, and until the
        # full state is back this cluster's exports are missing for every importer.
        backoff = Backoff(initial=0.5, maximum=EXPORT_RETRY_MAX)
        while True:
            if self.exports.value is None:
                version, sent = await self.exports.next(0)
            else:  # (re)start from the latest state, whatever was sent before
                version, sent = self.exports.version, self.exports.value
            try:
                async with registry.report_endpoints() as report:
                    await report.full_state(_exported(sent.values()))
                    self.export_stream_up = True
                    await self._mark_reported(sent)
                    self._settle_gc()
                    backoff.reset()
                    ended = asyncio.ensure_future(report.ended())
                    try:
                        while True:
                            version, new = await _next_or_end(self.exports.next(version), ended)
                            upserted, removed = export_delta(sent, new)
                            if not self._may_write():  # lost the lease: _leadership cancels us
                                await asyncio.Event().wait()
                            if upserted or removed:
                                await report.delta(_exported(upserted), removed)
                            sent = new
                            await self._mark_reported(sent)
                    finally:
                        ended.cancel()
            except FederationError as err:
                self.reported = frozenset()
                self.export_stream_up = False
                self.export_stream_restarts += 1
                delay = backoff.next()
                log.warning("export stream ended (%s); full state again in %.1fs", err, delay)
                await asyncio.sleep(delay)

    async def _mark_reported(self, sent: Exports) -> None:
        self.reported = frozenset(sent)
        if self.kube_source is not None:
            now = datetime.now(UTC)
            await self.kube_source.set_conditions(
                {(k.namespace, k.name): [conditions.ready(True, now)] for k in sent}
            )

    # --- imports -----------------------------------------------------------------------

    async def _follow(self, registry: ControlPlaneClient) -> None:
        async for watch_view in registry.follow(view=self.watch_view):
            self.watch_view = watch_view
            if registry.adopt_bundles(watch_view.items.bundles) is not None:
                self._renew_wake.set()  # a root rotation was activated: renew now
            await self._apply_registry_ca(watch_view)
            view = import_view(self.config.cluster, watch_view, self.cidr, previous=self.view)
            await self.apply(view)

    async def _apply_registry_ca(self, watch_view: WatchView) -> None:
        """The ConfigMap meshfed-registry-ca follows the roots (writer only; never raises)."""
        writer = self.registry_ca  # None on a follower and without Kubernetes
        if writer is not None and self._may_write():
            await writer.apply(watch_view.items.bundles)

    async def apply(self, view: ImportView) -> None:
        """Hand a new view to every sink; a failing sink does not stop the others."""
        cfg = self.config
        self.view = view
        if self.dns is not None:
            self.dns.update(compile_zone(view, cfg.locality))
        if cfg.imports_file is not None:
            try:
                write_atomic(cfg.imports_file, dump(view))
            except SourceError as err:
                log.error("imports file not written: %s", err)
        sink = self.kube_sink  # None on a follower: only the leader writes the cluster
        if sink is not None and self._may_write():
            await self._apply_kube(sink, view)
        self.views_applied += 1
        self._settle_gc()

    async def _apply_kube(self, sink: KubeSink, view: ImportView) -> None:
        cfg = self.config
        sink.targets = slice_targets(
            cfg.cluster, self.watch_view, cfg.egress_addresses, cfg.locality
        )
        try:
            await sink.apply(view)
        except DiscoveryError as err:
            log.error("Kubernetes sink: %s (the resync retries)", err)

    def _settle_gc(self) -> None:
        """After the initial sync, exempt what is held from the cyclic GC's scans.

        With 1,000 services the agent holds a few hundred thousand long-lived
        objects; each full (generation 2) collection rescanned them all and paused
        the loop for 150-250 ms, the whole tail of the propagation benchmark. The
        records are acyclic, so reference counting still frees them when replaced;
        `gc.freeze` only stops the collector from walking them again and again.
        """
        if self._gc_frozen or self.views_applied == 0 or not self.reported:
            return
        self._gc_frozen = True
        gc.collect()
        gc.freeze()


class _LeaderSource(KubeSource):
    """The Kubernetes source; a follower watches but writes no ServiceExport status.

    (The fenced client would refuse those writes anyway; skipping them keeps a
    follower's log quiet. A new leader writes every status when its term starts.)
    """

    def __init__(self, *args: Any, may_write: Callable[[], bool], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.may_write = may_write

    async def write_status(self, keys: set[tuple[str, str]] | None = None) -> None:
        if self.may_write():
            await super().write_status(keys)


def _exported(services: Iterable[LocalService]) -> list[ExportedService]:
    return [ExportedService(s.export, tuple(s.endpoints)) for s in services]


async def _next_or_end(
    change: Coroutine[Any, Any, tuple[int, Exports]], ended: asyncio.Future[None]
) -> tuple[int, Exports]:
    """The next export change, or the stream's end (raised) if the registry ends it first.

    An idle agent must notice a dead stream at once: its records are held under the
    stream's lease, and a registry restart would otherwise let them expire for good.
    """
    waiting = asyncio.ensure_future(change)
    pending: set[asyncio.Future[Any]] = {waiting, ended}
    done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
    if waiting in done:
        return waiting.result()
    waiting.cancel()
    ended.result()  # raises the stream's FederationError
    raise RegistryUnavailable("CANCELLED", "the registry ended the export stream")
