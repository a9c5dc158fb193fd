"""Egress: local listeners that carry connections to the best remote gateway.

Why it exists: this is the asyncio shell of failover. For each egress route a
listener accepts local connections; each connection asks the pure ranker
(:mod:`eastwest_gateway.ranking`) for the order of clusters, tries them in that
order (at most ``max_connect_attempts``), feeds every connect result back into
the outlier state, and relays. A dead cluster therefore costs the client no
failed connection: the connect is retried at once on the next cluster, and after
``consecutive_failures`` the cluster is ejected so later connections skip it.
A peer that refuses fails at once; a blackholed one (a partition: SYNs vanish)
fails after ``peer_connect_timeout`` (1.5 s, shorter than the backend
``connect_timeout``), and an origination handshake cut off half-way after
``peer_handshake_timeout`` (3 s; see :mod:`eastwest_gateway.settings`).

Peer gateways are probed every ``probe_interval`` (:mod:`eastwest_gateway.probe`,
:mod:`eastwest_gateway.health`); a DOWN cluster is skipped by the ranker.

Modes: ``passthrough`` relays the client's own TLS unchanged; ``originate``
accepts plaintext and opens mTLS to the remote gateway with the gateway's
certificate and the route's SNI (for a remote route in terminate mode); when the
cluster names the gateway's ``spiffe_id`` the upstream must present exactly it
(another identity fails like a failed handshake: next gateway, outlier count).
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import ssl
import time

from eastwest_gateway.errors import GatewayError, HandshakeError, UpstreamError
from eastwest_gateway.health import ProbeState, observe
from eastwest_gateway.identity import spiffe_id_from_der
from eastwest_gateway.metrics import EGRESS, GatewayMetrics
from eastwest_gateway.net import close_quietly, connect, open_listener, prepare_accepted
from eastwest_gateway.probe import probe_gateway
from eastwest_gateway.ranking import (
    Candidate,
    Health,
    OutlierPolicy,
    OutlierState,
    rank,
    record_failure,
    record_success,
    uneject_on_probe,
)
from eastwest_gateway.relay import (
    HAVE_SPLICE,
    PlainEndpoint,
    RelayHandle,
    TlsEndpoint,
    relay_async,
    relay_splice,
    relay_tls,
)
from eastwest_gateway.routefile import EgressMode, EgressRoute, HostPort, Locality, RouteFile
from eastwest_gateway.settings import GatewaySettings
from eastwest_gateway.tlsstream import TlsStream

log = logging.getLogger("meshfed.gateway.egress")


def check_upstream_identity(stream: TlsStream, expected: str) -> None:
    """The upstream gateway must present ``expected`` as its SPIFFE ID (if one is
    expected); the chain was verified by the handshake. HandshakeError otherwise."""
    if not expected:
        return
    der = stream.peer_certificate_der()
    if der is None:
        raise HandshakeError("upstream presented no certificate", reason="no_spiffe_id")
    found = spiffe_id_from_der(der)
    if found != expected:
        raise HandshakeError(
            f"upstream gateway is {found}, expected {expected}", reason="wrong_spiffe_id"
        )


class Egress:
    """All egress listeners of a gateway, sharing outlier and probe state per cluster."""

    def __init__(
        self,
        route_file: RouteFile,
        client_context: ssl.SSLContext | None,
        settings: GatewaySettings,
        metrics: GatewayMetrics,
        policy: OutlierPolicy | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.policy = policy or OutlierPolicy(
            consecutive_failures=settings.eject_after_failures,
            base_ejection=settings.ejection_base,
            max_ejection=settings.ejection_max,
        )
        self.rng = rng or random.Random()
        self.outliers: dict[str, OutlierState] = {}
        self.probes: dict[str, ProbeState] = {}
        self._routes: dict[HostPort, EgressRoute] = {}
        self._listeners: dict[HostPort, tuple[socket.socket, asyncio.Task[None]]] = {}
        self._connections: dict[asyncio.Task[None], RelayHandle] = {}
        self._probe_task: asyncio.Task[None] | None = None
        self._route_file = route_file
        self._context = client_context
        self._accepting = False

    @property
    def locality(self) -> Locality:
        return self._route_file.locality or Locality("", "")

    def address(self, listen: HostPort) -> HostPort:
        host, port = self._listeners[listen][0].getsockname()[:2]
        return HostPort(host, port)

    async def start(self) -> None:
        self._accepting = True
        self._sync_listeners()
        self._probe_task = asyncio.create_task(self._probe_loop())

    def update(self, route_file: RouteFile, client_context: ssl.SSLContext | None) -> None:
        """Apply a reloaded route file; live connections are not touched."""
        self._route_file = route_file
        self._context = client_context
        if self._accepting:
            self._sync_listeners()

    def _sync_listeners(self) -> None:
        wanted = {e.listen: e for e in self._route_file.egress}
        for addr in list(self._listeners):
            if addr not in wanted:
                sock, task = self._listeners.pop(addr)
                task.cancel()
                close_quietly(sock)
        self._routes = wanted
        for addr in wanted:
            if addr not in self._listeners:
                sock = open_listener(addr)
                task = asyncio.create_task(self._accept_loop(addr, sock))
                self._listeners[addr] = (sock, task)

    def stop_accepting(self) -> None:
        self._accepting = False
        for sock, task in self._listeners.values():
            task.cancel()
            close_quietly(sock)
        self._listeners.clear()

    def close(self) -> None:
        if self._probe_task is not None:
            self._probe_task.cancel()

    async def drain(self, deadline: float) -> int:
        pending = set(self._connections)
        if not pending:
            return 0
        _, still = await asyncio.wait(pending, timeout=deadline)
        for task in still:
            self._connections[task].abort()
            task.cancel()
        if still:
            await asyncio.wait(still, timeout=1.0)
        return len(still)

    # --- ranking inputs --------------------------------------------------------------

    def candidates(self, route: EgressRoute) -> list[Candidate]:
        return [
            Candidate(
                name=c.name,
                locality=c.locality,
                ready_endpoints=c.ready_endpoints,
                health=self.probes.get(c.name, ProbeState()).health,
                weight=c.weight,
                priority=c.priority,
            )
            for c in route.clusters
        ]

    def _record(self, cluster: str, ok: bool) -> None:
        before = self.outliers.get(cluster, OutlierState())
        if ok:
            self.outliers[cluster] = record_success(before)
            return
        now = time.monotonic()
        after = record_failure(before, now, self.policy)
        self.outliers[cluster] = after
        self.metrics.connect_failures.labels(EGRESS, cluster).inc()
        if after.ejections > before.ejections:
            self.metrics.ejections.labels(cluster).inc()
            log.warning("egress: cluster %s ejected for %.1fs", cluster, after.ejected_until - now)

    # --- connections -----------------------------------------------------------------

    async def _accept_loop(self, addr: HostPort, listener: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                client, _ = await loop.sock_accept(listener)
            except OSError as exc:
                log.warning("egress accept failed: %s", exc)
                await asyncio.sleep(0.05)
                continue
            prepare_accepted(client)
            route = self._routes.get(addr)
            if route is None or len(self._connections) >= self.settings.max_connections:
                close_quietly(client)
                self.metrics.connections.labels(EGRESS, "", "", "over_limit").inc()
                continue
            handle = RelayHandle()
            task = asyncio.create_task(self._serve(client, route, self._context, handle))
            self._connections[task] = handle
            self.metrics.active.labels(EGRESS).inc()
            task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Task[None]) -> None:
        self._connections.pop(task, None)
        self.metrics.active.labels(EGRESS).dec()

    async def _open_upstream(
        self, route: EgressRoute, context: ssl.SSLContext | None
    ) -> tuple[str, socket.socket, TlsStream | None]:
        ranked = rank(
            self.locality, self.candidates(route), self.outliers, time.monotonic(), self.rng
        )
        clusters = {c.name: c for c in route.clusters}
        handshake_timeout = min(
            self.settings.handshake_timeout, self.settings.peer_handshake_timeout
        )
        for candidate in ranked[: self.settings.max_connect_attempts]:
            for gateway in clusters[candidate.name].gateways:
                try:
                    sock, seconds = await connect(gateway, self.settings.peer_connect_timeout)
                except UpstreamError as exc:
                    log.info("egress: %s via %s failed: %s", candidate.name, gateway, exc)
                    continue
                stream = None
                if route.mode is EgressMode.ORIGINATE:
                    assert context is not None  # the route file guarantees it
                    stream = TlsStream(sock, context, server_side=False, server_hostname=route.sni)
                    try:
                        await asyncio.wait_for(stream.handshake(), handshake_timeout)
                        check_upstream_identity(stream, clusters[candidate.name].spiffe_id)
                    except (HandshakeError, TimeoutError) as exc:
                        close_quietly(sock)
                        wrong = getattr(exc, "reason", "") == "wrong_spiffe_id"
                        reason = "upstream_identity" if wrong else "upstream_handshake"
                        self.metrics.handshake_failures.labels(EGRESS, reason).inc()
                        log.info(
                            "egress: TLS to %s via %s failed: %s", candidate.name, gateway, exc
                        )
                        continue
                self.metrics.connect_latency.labels(EGRESS).observe(seconds)
                self._record(candidate.name, ok=True)
                return candidate.name, sock, stream
            self._record(candidate.name, ok=False)
        raise UpstreamError(f"no cluster reachable for {route.sni} (tried {len(ranked)})")

    async def _serve(
        self,
        client: socket.socket,
        route: EgressRoute,
        context: ssl.SSLContext | None,
        handle: RelayHandle,
    ) -> None:
        service = route.service
        try:
            try:
                cluster, upstream, stream = await self._open_upstream(route, context)
            except GatewayError as exc:
                self.metrics.connections.labels(EGRESS, "", service, "no_upstream").inc()
                log.warning("egress reject service=%s: %s", service, exc)
                return
            rx = self.metrics.bytes.labels(EGRESS, service, "rx").inc
            tx = self.metrics.bytes.labels(EGRESS, service, "tx").inc
            idle = self.settings.idle_timeout
            try:
                use_splice = self.settings.relay == "splice" or (
                    self.settings.relay == "auto" and HAVE_SPLICE
                )
                if stream is None and use_splice:
                    await relay_splice(
                        client, upstream, idle_timeout=idle, handle=handle, a_to_b=rx, b_to_a=tx
                    )
                elif stream is not None and use_splice:  # originate: TLS in the relay thread
                    await relay_tls(
                        stream,
                        client,
                        idle_timeout=idle,
                        handle=handle,
                        tls_to_plain=tx,
                        plain_to_tls=rx,
                    )
                else:
                    far = PlainEndpoint(upstream) if stream is None else TlsEndpoint(stream)
                    await relay_async(
                        PlainEndpoint(client),
                        far,
                        idle_timeout=idle,
                        handle=handle,
                        a_to_b=rx,
                        b_to_a=tx,
                    )
                outcome = "idle_timeout" if handle.idle_expired else "ok"
            except OSError:
                outcome = "error"
            finally:
                close_quietly(upstream)
            self.metrics.connections.labels(EGRESS, cluster, service, outcome).inc()
        finally:
            close_quietly(client)

    # --- probes ----------------------------------------------------------------------

    async def _probe_loop(self) -> None:
        while True:
            targets: dict[str, tuple[HostPort, ...]] = {}
            for route in self._route_file.egress:
                for c in route.clusters:
                    targets[c.name] = c.gateways
            await asyncio.gather(*(self._probe(name, gws) for name, gws in targets.items()))
            await asyncio.sleep(self.settings.probe_interval)

    async def _probe(self, cluster: str, gateways: tuple[HostPort, ...]) -> None:
        timeout = min(self.settings.peer_connect_timeout, self.settings.probe_interval)
        results = [await probe_gateway(g, self._context, timeout) for g in gateways]
        before = self.probes.get(cluster, ProbeState())
        after = observe(before, any(results))
        self.probes[cluster] = after
        if after.health is not before.health:
            log.info("egress: peer gateway %s is %s", cluster, after.health.value)
        if any(results) and cluster in self.outliers:
            now = time.monotonic()
            held = self.outliers[cluster]
            self.outliers[cluster] = uneject_on_probe(held, now)
            if held.is_ejected(now):
                log.info("egress: cluster %s answers probes again: ejection lifted", cluster)
        for state in Health:
            self.metrics.peer_health.labels(cluster, state.value).set(
                1 if after.health is state else 0
            )
