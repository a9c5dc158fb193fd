"""The servicers: each RPC authenticates, authorizes, then calls the store or the TrustService.

Why this module exists: this is the thin shell between gRPC and the pure rules
(`identity`, `reports`, `health`, `projection`). Every method body runs inside
`status.boundary`, which turns the domain's errors into status codes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from datetime import datetime
from functools import partial
from typing import Any, Protocol

from cryptography import x509

from federation.controlplane import meshfed_pb2 as pb
from federation.controlplane import meshfed_pb2_grpc as pbg
from federation.controlplane.convert import at, timestamp
from federation.controlplane.fullstate import (
    Held,
    endpoints_prefix,
    export_key,
    plan_full_state,
)
from federation.controlplane.health import Probe, apply_probe, directions, gateway_health
from federation.controlplane.identity import (
    AGENT,
    GATEWAY,
    Caller,
    caller_from_auth_context,
    check_issuer,
    component_of,
    require,
    require_own_identity,
)
from federation.controlplane.reports import ReportPlan, ServiceWrite, plan_report
from federation.controlplane.settings import Settings
from federation.controlplane.status import boundary
from federation.controlplane.watch import WatchStream
from federation.errors import (
    AlreadyExists,
    Conflict,
    LeaseNotFound,
    NotFound,
    PermissionDenied,
    StoreError,
    ValidationError,
)
from federation.model import BundleReport, Link, ServiceExport, ServiceKey
from federation.model import validation as v
from federation.store import Store
from federation.store.backend import KeyValue
from federation.store.typed import storage_key
from trust_bundle.svid import parse_csr, verify_csr

log = logging.getLogger("meshfed.controlplane")

Clock = Callable[[], datetime]
# Compare-and-swap retries for a link or gateway status update: each retry means
# another writer got in between; a handful is plenty.
CAS_ATTEMPTS = 8
# A full state's transactions that may meet a concurrent writer (another replica
# of the cluster's agent) before the stream gives up with ABORTED; each one is
# re-read and re-planned first (Store.replace_endpoints allows as many per service).
FULL_STATE_ATTEMPTS = 5
# Services whose endpoints a full state reads at once (one ranged read each).
READ_CONCURRENCY = 16
# Roots one health report may list: a bundle holds one root, two during a rotation;
# 16 leaves room for other federations' bundles and bounds what a caller can write.
MAX_REPORTED_ROOTS = 16


class Trust(Protocol):
    """What the control plane needs of federation.registry.trust.TrustService."""

    async def redeem_join_token(self, token: str, now: datetime) -> str: ...

    async def sign_component_csr(
        self, cluster: str, component: str, csr_pem: bytes, now: datetime
    ) -> tuple[bytes, bytes]: ...

    async def server_credentials(
        self, name: str, dns_names: list[str], ip_addresses: list[str], now: datetime
    ) -> tuple[bytes, bytes, bytes]: ...

    async def bundle_pem(self) -> bytes: ...

    async def server_issuer_pem(self) -> bytes: ...

    async def record_bundle_report(self, report: BundleReport) -> None: ...


def credentials(chain_pem: bytes, bundle_pem: bytes) -> pb.Credentials:
    leaf = x509.load_pem_x509_certificate(chain_pem)
    spiffe = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    uris = spiffe.value.get_values_for_type(x509.UniformResourceIdentifier)
    return pb.Credentials(
        spiffe_id=uris[0] if uris else "",
        chain_pem=chain_pem,
        bundle_pem=bundle_pem,
        not_after=timestamp(leaf.not_valid_after_utc),
    )


def _component_csr(csr_pem: bytes) -> tuple[str, str, Any]:
    """Check a CSR before anything is spent on it: (component, cluster, claim)."""
    claim = verify_csr(parse_csr(csr_pem))
    component, cluster = component_of(claim.spiffe_id)
    return component, cluster, claim


@dataclass(frozen=True, slots=True)
class Context:
    store: Store
    trust: Trust
    settings: Settings
    now: Clock

    async def authenticate(self, grpc_context: Any) -> Caller:
        """The verified caller, whose cluster exists and whose CA issued its certificate."""
        caller = caller_from_auth_context(grpc_context.auth_context())
        try:
            cluster = (await self.store.clusters.get(caller.cluster)).record
        except NotFound:
            raise PermissionDenied(
                f"{caller}: cluster {caller.cluster} is not registered"
            ) from None
        check_issuer(caller, cluster.trust_domain)
        return caller


class BootstrapServicer(pbg.BootstrapServicer):
    """The join port: no client certificate; a join token instead."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    async def Join(self, request: pb.JoinRequest, context: Any) -> pb.Credentials:
        async with boundary(context, "Join"):
            # Validate the CSR first so a malformed one does not burn the token.
            component, _, _ = _component_csr(request.csr_pem)
            now = self.ctx.now()
            cluster = await self.ctx.trust.redeem_join_token(request.token, now)
            chain, bundle = await self.ctx.trust.sign_component_csr(
                cluster, component, request.csr_pem, now
            )
            log.info("cluster %s's %s joined", cluster, component)
            return credentials(chain, bundle)
        raise AssertionError("unreachable: boundary aborts")


class ControlPlaneServicer(pbg.ControlPlaneServicer):
    """The mTLS port."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    async def SignCSR(self, request: pb.SignCSRRequest, context: Any) -> pb.Credentials:
        async with boundary(context, "SignCSR"):
            caller = await self.ctx.authenticate(context)
            _, _, claim = _component_csr(request.csr_pem)
            require_own_identity(caller, claim.spiffe_id)
            chain, bundle = await self.ctx.trust.sign_component_csr(
                caller.cluster, caller.component, request.csr_pem, self.ctx.now()
            )
            return credentials(chain, bundle)
        raise AssertionError("unreachable: boundary aborts")

    async def ReportEndpoints(
        self, request_iterator: AsyncIterator[pb.EndpointReport], context: Any
    ) -> pb.ReportEndpointsResponse:
        async with boundary(context, "ReportEndpoints"):
            caller = await self.ctx.authenticate(context)
            require(caller, caller.cluster, (AGENT,))
            session = EndpointSession(self.ctx.store, caller.cluster, self.ctx.settings)
            return await session.run(request_iterator)
        raise AssertionError("unreachable: boundary aborts")

    async def Watch(self, request: pb.WatchRequest, context: Any) -> AsyncIterator[pb.WatchEvent]:
        async with boundary(context, "Watch"):
            caller = await self.ctx.authenticate(context)
            cluster = request.cluster or caller.cluster
            require(caller, cluster)
            stream = WatchStream(self.ctx.store, cluster, self.ctx.settings)
            async for event in stream.events(request.since_revision or None):
                yield event

    async def ReportHealth(self, request: pb.HealthReport, context: Any) -> pb.ReportHealthResponse:
        async with boundary(context, "ReportHealth"):
            caller = await self.ctx.authenticate(context)
            require(caller, caller.cluster, (GATEWAY,))
            probes = [
                at(
                    f"probes[{i}]",
                    partial(_probe, caller.cluster, p.peer_cluster, p.up, p.reason, p.message),
                )
                for i, p in enumerate(request.probes)
            ]
            now = self.ctx.now()
            report = _bundle_report(caller.cluster, request, now)  # refused before any write
            unknown = await record_probes(self.ctx.store, probes, now)
            if report is not None:
                await self.ctx.trust.record_bundle_report(report)
            return pb.ReportHealthResponse(unknown_peers=unknown)
        raise AssertionError("unreachable: boundary aborts")


def _bundle_report(cluster: str, request: pb.HealthReport, now: datetime) -> BundleReport | None:
    roots = list(request.trusted_roots_sha256)
    if not roots:
        return None
    if len(roots) > MAX_REPORTED_ROOTS:
        raise ValidationError(
            "trusted_roots_sha256", f"{len(roots)} roots; at most {MAX_REPORTED_ROOTS}"
        )
    return BundleReport(cluster, tuple(roots), now, request.instance)


def _probe(reporter: str, peer: str, up: bool, reason: str, message: str) -> Probe:
    v.dns1123_label("peer_cluster", peer)
    return Probe(reporter, peer, up, reason, message)


# -- ReportEndpoints ---------------------------------------------------------------


class EndpointSession:
    """One ReportEndpoints stream: its lease, kept alive while the stream lives.

    When the stream ends (or the agent vanishes and gRPC keepalive notices) the
    lease is left to expire after its TTL rather than revoked, so an agent that
    reconnects within the TTL re-attaches its records with its full state and no
    watcher sees them blink.
    """

    def __init__(self, store: Store, cluster: str, settings: Settings) -> None:
        self.store = store
        self.cluster = cluster
        self.settings = settings
        self.lease = 0
        self.revision = 0
        self.held: set[ServiceKey] = set()

    async def run(self, reports: AsyncIterator[pb.EndpointReport]) -> pb.ReportEndpointsResponse:
        self.lease = await self.store.grant_lease(self.settings.lease_ttl)
        keeper = asyncio.create_task(self._keep_alive(), name=f"lease-{self.cluster}")
        reader = asyncio.create_task(self._consume(reports), name=f"report-{self.cluster}")
        try:
            await asyncio.wait({keeper, reader}, return_when=asyncio.FIRST_COMPLETED)
            if not reader.done():  # the lease is gone: the agent must start over
                reader.cancel()
                keeper.result()
                raise LeaseNotFound(self.lease)
            reader.result()
        finally:
            for task in (keeper, reader):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        return pb.ReportEndpointsResponse(revision=self.revision, services=len(self.held))

    async def _keep_alive(self) -> None:
        while True:
            await asyncio.sleep(self.settings.keepalive_interval)
            try:
                await self.store.keepalive(self.lease)
            except LeaseNotFound:
                log.warning("lease of %s's endpoint stream expired", self.cluster)
                raise
            except StoreError as exc:  # transient: the next tick retries within the TTL
                log.info("keepalive of %s's lease failed: %s", self.cluster, exc)

    async def _consume(self, reports: AsyncIterator[pb.EndpointReport]) -> None:
        first = True
        async for message in reports:
            plan = plan_report(self.cluster, message, first)
            await self.apply(plan)
            first = False

    async def apply(self, plan: ReportPlan) -> None:
        if plan.full_state:  # lists everything: nothing to remove (plan_report)
            await self._apply_full_state(plan.writes)
        else:
            for write in plan.writes:
                await self._upsert(write)
            for key in plan.removals:
                await self._remove(key)
        self.revision = max(self.revision, await self.store.revision())

    async def _upsert(self, write: ServiceWrite) -> None:
        store = self.store
        current = await store.exports.find(write.export.key)
        if current is None or current.record != write.export or current.lease != self.lease:
            await store.exports.put(write.export, lease=self.lease)
        self.revision = await store.replace_endpoints(
            self.cluster,
            write.service.namespace,
            write.service.name,
            write.endpoints,
            lease=self.lease,
        )
        self.held.add(write.service)

    async def _apply_full_state(self, writes: tuple[ServiceWrite, ...]) -> None:
        """Replace what the store holds for the cluster in a few transactions
        (`fullstate.plan_full_state`), each holding whole services; a transaction
        that meets a concurrent writer is re-read and re-planned (its services only)."""
        prefix = storage_key(ServiceExport.KIND, "")
        exports, _ = await self.store.backend.list(prefix)
        held_exports: dict[ServiceKey, KeyValue] = {}
        for kv in exports:
            namespace, name, cluster = kv.key[len(prefix) :].split("/")
            if cluster == self.cluster:
                held_exports[ServiceKey(namespace, name)] = kv
        keys = set(held_exports) | {w.service for w in writes}
        held = await self._read_endpoints(keys, held_exports)
        pending = plan_full_state(writes, held, self.lease)
        by_key = {w.service: w for w in writes}
        attempts = 0
        while pending:
            txn = pending.pop(0)
            try:
                self.revision = max(self.revision, await self.store.commit(txn.ops))
            except (Conflict, AlreadyExists, NotFound):
                attempts += 1
                if attempts >= FULL_STATE_ATTEMPTS:
                    raise
                again = await self._read_held(txn.services)
                retry = [by_key[k] for k in txn.services if k in by_key]
                pending[:0] = plan_full_state(retry, again, self.lease)
        self.held = set(by_key)

    async def _read_held(self, keys: tuple[ServiceKey, ...]) -> dict[ServiceKey, Held]:
        exports: dict[ServiceKey, KeyValue] = {}
        for key in keys:
            kv = await self.store.backend.get(export_key(key, self.cluster))
            if kv is not None:
                exports[key] = kv
        return await self._read_endpoints(set(keys), exports)

    async def _read_endpoints(
        self, keys: set[ServiceKey], exports: dict[ServiceKey, KeyValue]
    ) -> dict[ServiceKey, Held]:
        """Each service's export (given) and endpoints in this cluster, read
        `READ_CONCURRENCY` services at a time."""
        gate = asyncio.Semaphore(READ_CONCURRENCY)

        async def read(key: ServiceKey) -> tuple[ServiceKey, Held]:
            async with gate:
                eps, _ = await self.store.backend.list(endpoints_prefix(key, self.cluster))
            return key, Held(exports.get(key), tuple(eps))

        return dict(await asyncio.gather(*(read(k) for k in sorted(keys, key=str))))

    async def _remove(self, key: ServiceKey) -> None:
        await self.store.replace_endpoints(self.cluster, key.namespace, key.name, ())
        with contextlib.suppress(NotFound):
            await self.store.exports.delete(f"{key}/{self.cluster}")
        self.held.discard(key)


# -- ReportHealth --------------------------------------------------------------------


async def _find_link(store: Store, a: str, b: str) -> Link | None:
    for key in (f"{a}/{b}", f"{b}/{a}"):
        found = await store.links.find(key)
        if found is not None:
            return found.record
    return None


async def _update_link(store: Store, key: str, probe: Probe, now: datetime) -> bool:
    """Apply `probe` to link `key` (compare-and-swap); False if the link is gone."""
    for _ in range(CAS_ATTEMPTS):
        current = await store.links.find(key)
        if current is None:
            return False
        updated = apply_probe(current.record, probe, now)
        if updated == current.record:
            return True
        try:
            await store.links.update(updated, current.revision)
            return True
        except (Conflict, NotFound):
            continue
    raise Conflict(f"links/{key}", -1, None)


async def _update_gateway(store: Store, cluster: str) -> None:
    links = [v.record for v in await store.links.list() if cluster in (v.record.a, v.record.b)]
    healthy = gateway_health(cluster, links)
    for _ in range(CAS_ATTEMPTS):
        current = await store.gateways.find(cluster)
        if current is None or current.record.healthy == healthy:
            return
        gateway = current.record
        updated = replace(gateway, healthy=healthy)  # keeps locality and trust domain
        try:
            await store.gateways.update(updated, current.revision, lease=current.lease)
            return
        except (Conflict, NotFound):
            continue


async def record_probes(store: Store, probes: list[Probe], now: datetime) -> list[str]:
    """Apply each probe to its link and the peer's gateway; returns peers with no link."""
    unknown: list[str] = []
    for probe in probes:
        link = await _find_link(store, probe.reporter, probe.peer)
        if link is None or (probe.reporter, probe.peer) not in directions(link):
            unknown.append(probe.peer)
            continue
        if not await _update_link(store, link.key, probe, now):
            unknown.append(probe.peer)
            continue
        await _update_gateway(store, probe.peer)
    return unknown
