"""The registry's control plane as agents and gateways use it: join, renew, report, watch.

Why this module exists: `eastwest_gateway` and `discovery_sync` may reach the
registry only through `federation.client` (tests/test_import_contract.py), so
everything they need is here, in records (`federation.model`) rather than
protobuf, with the registry's refusals as `federation.errors`.

    identity = await join(join_address, token, cluster="east", component="agent",
                          trust_domain="east.example", ca_pem=roots)
    async with ControlPlaneClient(address, identity) as registry:
        async with registry.report_endpoints() as report:
            await report.full_state([ExportedService(export, endpoints), ...])
            await report.delta(upserted=[...], removed=[ServiceKey("ns", "svc")])
        async for view in registry.follow():      # reconnects, resumes, keeps the view
            ...
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import grpc  # type: ignore[import-untyped]

from federation.client.credentials import Identity, component_id, new_key_and_csr
from federation.client.errors import (
    RegistryError,
    RegistryUnavailable,
    StreamAborted,
    translate,
)
from federation.client.rotation import fingerprints, registry_roots, rotation_renewal
from federation.client.watch import WatchEvent, WatchView, event_from_pb
from federation.controlplane import meshfed_pb2 as pb
from federation.controlplane import meshfed_pb2_grpc as pbg
from federation.controlplane.convert import endpoint_to_pb, export_to_pb, service_ref
from federation.errors import FederationError
from federation.model import Endpoint, ServiceExport, ServiceKey, TrustDomain
from trust_bundle import parse_spiffe_id

log = logging.getLogger("meshfed.client")

# Client keepalive: ping every 10 s, give up after 5 s without an answer, so a
# dead registry is noticed and the watch reconnects (grpc.io keepalive guide; the
# server permits pings every 5 s: federation.controlplane.settings).
# The channel's own reconnect backoff is capped like `follow`'s (BACKOFF_MAX below):
# with gRPC's default 120 s cap a channel that failed through a 30 s registry outage
# waited 10-17 s more before dialling again, answering every call meanwhile with the
# last "connection refused", so agents re-reported after the leases the restarted
# registry had renewed for one TTL ran out (e2e drill 5 caught it).
CHANNEL_OPTIONS = (
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.max_receive_message_length", 16 * 1024 * 1024),
    ("grpc.initial_reconnect_backoff_ms", 1_000),
    ("grpc.max_reconnect_backoff_ms", 5_000),
)
# Reconnect backoff for `follow`: gRPC's connection-backoff defaults
# (doc/connection-backoff.md: 1 s initial, x1.6, 120 s max, 20 % jitter), capped
# much lower because a watcher that misses imports matters more than registry load:
# after a registry restart every gateway and agent is back within ~5 s (e2e drill 5).
BACKOFF_INITIAL = 1.0
BACKOFF_MULTIPLIER = 1.6
BACKOFF_MAX = 5.0
BACKOFF_JITTER = 0.2
# Unary calls must not hang forever on a half-open connection.
UNARY_TIMEOUT = 30.0
# A channel replaced by `use` is closed this much later: twice the unary timeout, so
# every unary call begun on it has ended.
RETIRED_GRACE = 2 * UNARY_TIMEOUT


@dataclass(frozen=True, slots=True)
class ExportedService:
    """One service the reporting cluster exports: the export and all its endpoints."""

    export: ServiceExport
    endpoints: Sequence[Endpoint] = ()


@dataclass(frozen=True, slots=True)
class PeerProbe:
    """A gateway's probe of a peer cluster's gateway."""

    peer_cluster: str
    up: bool
    reason: str = ""  # CamelCase, e.g. ConnectTimeout
    message: str = ""


async def join(
    address: str,
    token: str,
    *,
    cluster: str,
    component: str,
    trust_domain: str,
    ca_pem: bytes,
    timeout: float = UNARY_TIMEOUT,
) -> Identity:
    """Spend a join token on the registry's join port: a fresh key and its first SVID.

    `ca_pem` verifies the registry's serving certificate (the federation roots,
    e.g. from `GET /api/v1/trust/bundles`); the token is never sent to a server
    that does not chain to them.
    """
    spiffe_id = component_id(component, cluster, trust_domain)
    key, csr = new_key_and_csr(spiffe_id)
    creds = grpc.ssl_channel_credentials(ca_pem)
    async with grpc.aio.secure_channel(address, creds, options=CHANNEL_OPTIONS) as channel:
        try:
            reply = await pbg.BootstrapStub(channel).Join(
                pb.JoinRequest(token=token, csr_pem=csr), timeout=timeout
            )
        except grpc.aio.AioRpcError as exc:
            raise translate(exc) from None
    return Identity(reply.spiffe_id, key.unencrypted_pkcs8_pem(), reply.chain_pem, reply.bundle_pem)


class ControlPlaneClient:
    """mTLS calls to the registry as one agent or gateway."""

    def __init__(self, address: str, identity: Identity) -> None:
        self.address = address
        self._identity = identity
        self._channel: Any = self._connect(identity)
        self._retired: list[Any] = []
        self._closing: set[asyncio.Task[None]] = set()
        self._bundles: Mapping[str, TrustDomain] = {}  # the Watch's, once adopted
        self.cluster = _cluster_of(identity)

    @property
    def identity(self) -> Identity:
        return self._identity

    async def __aenter__(self) -> ControlPlaneClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        for channel in (*self._retired, self._channel):
            await channel.close()
        self._retired.clear()
        for task in list(self._closing):
            task.cancel()

    def _stub(self) -> Any:
        return pbg.ControlPlaneStub(self._channel)

    def use(self, identity: Identity) -> None:
        """Switch to a renewed identity; calls in flight finish on the old channel, which
        is closed RETIRED_GRACE later (a stream still on it then resumes on the new one)."""
        self._identity = identity
        old, self._channel = self._channel, self._connect(identity)
        self._retired.append(old)
        with contextlib.suppress(RuntimeError):  # no running loop (tests): close() does it
            task = asyncio.get_running_loop().create_task(self._close_later(old))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    async def _close_later(self, channel: Any) -> None:
        await asyncio.sleep(RETIRED_GRACE)
        if channel in self._retired:
            self._retired.remove(channel)
            await channel.close()

    def _connect(self, identity: Identity) -> Any:
        return grpc.aio.secure_channel(
            self.address, identity.channel_credentials(), options=CHANNEL_OPTIONS
        )

    def adopt_bundles(self, bundles: Mapping[str, TrustDomain]) -> str | None:
        """Follow the Watch's bundles: verify the registry with the roots of our trust
        domain's bundle (a new channel when they change: a rotation's prepare or
        retire). Returns why the SVID must be renewed now (activate), or None."""
        self._bundles = bundles
        roots = registry_roots(self._identity, bundles)
        if fingerprints(roots) != fingerprints(self._identity.bundle_pem):
            self.use(dataclasses.replace(self._identity, bundle_pem=roots))
        return rotation_renewal(self._identity, bundles)

    async def renew(self, timeout: float = UNARY_TIMEOUT) -> Identity:
        """A new key and SVID for the same identity; the client switches to it."""
        key, csr = new_key_and_csr(parse_spiffe_id(self._identity.spiffe_id))
        try:
            reply = await self._stub().SignCSR(pb.SignCSRRequest(csr_pem=csr), timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            raise translate(exc) from None
        renewed = Identity(
            reply.spiffe_id, key.unencrypted_pkcs8_pem(), reply.chain_pem, reply.bundle_pem
        )
        if self._bundles:  # the Watch's roots win over a reply that may predate a retire
            roots = registry_roots(renewed, self._bundles)
            renewed = dataclasses.replace(renewed, bundle_pem=roots)
        self.use(renewed)
        return renewed

    async def report_health(
        self,
        probes: Iterable[PeerProbe],
        timeout: float = UNARY_TIMEOUT,
        trusted_roots: Sequence[str] = (),
        instance: str = "",
    ) -> list[str]:
        """Report probe results (gateways only), and the fingerprints of the roots the
        gateway verifies peers with (a rotation's propagation evidence) as replica
        `instance` (a DNS name: its pod or host name); returns peers the registry has
        no link for."""
        request = pb.HealthReport(
            probes=[
                pb.PeerProbe(
                    peer_cluster=p.peer_cluster, up=p.up, reason=p.reason, message=p.message
                )
                for p in probes
            ],
            trusted_roots_sha256=list(trusted_roots),
            instance=instance,
        )
        try:
            reply = await self._stub().ReportHealth(request, timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            raise translate(exc) from None
        return list(reply.unknown_peers)

    def report_endpoints(self) -> EndpointReporter:
        """A ReportEndpoints stream (agents only): `full_state` first, then `delta`s."""
        return EndpointReporter(self._stub())

    async def watch(self, cluster: str | None = None, since: int = 0) -> AsyncIterator[WatchEvent]:
        """One Watch stream for `cluster` (default: the caller's), from `since` (0: snapshot)."""
        target = cluster or self.cluster
        call = self._stub().Watch(pb.WatchRequest(cluster=target, since_revision=since))
        try:
            async for message in call:
                yield event_from_pb(target, message)
        except grpc.aio.AioRpcError as exc:
            raise translate(exc) from None
        finally:
            call.cancel()

    async def follow(
        self, cluster: str | None = None, view: WatchView | None = None
    ) -> AsyncIterator[WatchView]:
        """The cluster's view after every change, forever: reconnects with backoff and
        resumes from the last revision; while the registry is away the last view stands."""
        view = view or WatchView()
        backoff = BACKOFF_INITIAL
        while True:
            try:
                async for event in self.watch(cluster, view.revision):
                    backoff = BACKOFF_INITIAL
                    new = view.apply(event)
                    changed = new.items is not view.items
                    view = new
                    if changed:
                        yield view
            except RegistryUnavailable as exc:
                log.info("watch: registry unavailable (%s); retrying in %.1fs", exc, backoff)
            except FederationError as exc:
                if not _retryable(exc):
                    raise
                log.info("watch ended (%s); resuming in %.1fs", exc, backoff)
            await asyncio.sleep(backoff * random.uniform(1 - BACKOFF_JITTER, 1 + BACKOFF_JITTER))
            backoff = min(backoff * BACKOFF_MULTIPLIER, BACKOFF_MAX)


def _retryable(exc: FederationError) -> bool:
    return isinstance(exc, StreamAborted) or (
        isinstance(exc, RegistryError) and exc.code in ("INTERNAL", "UNKNOWN", "CANCELLED")
    )


def _cluster_of(identity: Identity) -> str:
    path = parse_spiffe_id(identity.spiffe_id).path.split("/")
    return path[-1]


class EndpointReporter:
    """One ReportEndpoints stream. Records are held under the stream's lease: they
    expire a lease TTL after the stream ends unless a new stream re-sends them."""

    def __init__(self, stub: Any) -> None:
        self._call = stub.ReportEndpoints()
        self._sent_full = False

    async def __aenter__(self) -> EndpointReporter:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is None:
            await self.close()
        else:
            self._call.cancel()

    async def _write(self, message: pb.EndpointReport) -> None:
        try:
            await self._call.write(message)
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
            await self._raise_status()

    async def _raise_status(self) -> None:
        try:
            await self._call
        except grpc.aio.AioRpcError as exc:
            raise translate(exc) from None
        raise RegistryUnavailable("CANCELLED", "the registry ended the stream")

    async def full_state(self, services: Iterable[ExportedService]) -> None:
        """Everything the cluster exports; must be the stream's first message."""
        await self._write(pb.EndpointReport(full_state=True, services=_states(services)))
        self._sent_full = True

    async def delta(
        self, upserted: Iterable[ExportedService] = (), removed: Iterable[ServiceKey] = ()
    ) -> None:
        """Changed services (whole endpoint sets) and services no longer exported."""
        await self._write(
            pb.EndpointReport(services=_states(upserted), removed=[service_ref(k) for k in removed])
        )

    async def ended(self) -> None:
        """Wait until the registry ends the stream (restart, lease loss) and raise why.

        A reporter with nothing new to send would otherwise only find out at its
        next write, long after its records' lease expired on the registry.
        """
        await self._raise_status()

    async def close(self) -> int:
        """End the stream; returns the store revision of the last applied report."""
        try:
            await self._call.done_writing()
            reply = await self._call
        except grpc.aio.AioRpcError as exc:
            raise translate(exc) from None
        return int(reply.revision)


def _states(services: Iterable[ExportedService]) -> list[pb.ServiceState]:
    return [
        pb.ServiceState(
            export=export_to_pb(s.export), endpoints=[endpoint_to_pb(e) for e in s.endpoints]
        )
        for s in services
    ]
