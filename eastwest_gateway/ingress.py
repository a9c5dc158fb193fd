"""The ingress listener (port 15443): route each connection by SNI.

Why it exists: this is the asyncio shell around the pure pieces -- the
ClientHello parser, the route table and the identity check. Per connection:

1. read the ClientHello (:mod:`eastwest_gateway.clienthello`) within
   ``client_hello_timeout``; non-TLS, malformed or slow clients are closed;
2. look the SNI up (:mod:`eastwest_gateway.routing`); unknown names get a fatal
   ``unrecognized_name`` alert (RFC 6066 section 3) and no backend connection;
3. passthrough: connect the backend, forward the bytes already read, then relay
   without decrypting (splice threads where available);
   terminate: finish the TLS handshake with the gateway's certificate (client
   certificate required), authorise the peer's SPIFFE ID against the route's
   allow list, then connect the backend and relay plaintext.

Every rejected connection produces one metric increment and one log line.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import socket
import ssl
from collections import Counter
from dataclasses import dataclass

from eastwest_gateway.clienthello import (
    ALERT_DECODE_ERROR,
    ALERT_UNRECOGNIZED_NAME,
    ClientHello,
    ClientHelloParser,
    plaintext_alert,
)
from eastwest_gateway.errors import (
    ClientHelloError,
    GatewayError,
    HandshakeError,
    NotTLSError,
    UpstreamError,
)
from eastwest_gateway.identity import is_allowed, spiffe_id_from_der, trust_domain
from eastwest_gateway.metrics import INGRESS, GatewayMetrics
from eastwest_gateway.net import close_quietly, connect, open_listener, prepare_accepted
from eastwest_gateway.relay import (
    HAVE_SPLICE,
    PlainEndpoint,
    RelayHandle,
    TlsEndpoint,
    relay_async,
    relay_splice,
    relay_tls,
)
from eastwest_gateway.routefile import HostPort, Mode, Route
from eastwest_gateway.routing import RouteTable
from eastwest_gateway.settings import GatewaySettings
from eastwest_gateway.tlsstream import TlsStream

log = logging.getLogger("meshfed.gateway.ingress")

# A reserved name peers' health probes use: answered by the gateway itself.
PROBE_SNI = "healthz.gateway.meshfed"
HELLO_READ = 4096  # one ClientHello is usually one read; the parser bounds the total


@dataclass(frozen=True, slots=True)
class IngressConfig:
    """What a reload can swap atomically; live connections keep the one they began with."""

    table: RouteTable
    server_context: ssl.SSLContext | None


class Ingress:
    def __init__(
        self, config: IngressConfig, settings: GatewaySettings, metrics: GatewayMetrics
    ) -> None:
        self.config = config
        self.settings = settings
        self.metrics = metrics
        self._listener: socket.socket | None = None
        self._accept_task: asyncio.Task[None] | None = None
        self._connections: dict[asyncio.Task[None], RelayHandle] = {}
        self._per_peer: Counter[str] = Counter()
        self._next_backend: dict[str, int] = {}  # route sni -> round-robin position

    @property
    def address(self) -> HostPort:
        assert self._listener is not None
        host, port = self._listener.getsockname()[:2]
        return HostPort(host, port)

    @property
    def active(self) -> int:
        return len(self._connections)

    def start(self, listen: HostPort) -> None:
        self._listener = open_listener(listen)
        self._accept_task = asyncio.create_task(self._accept_loop(self._listener))

    async def _accept_loop(self, listener: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                client, addr = await loop.sock_accept(listener)
            except OSError as exc:
                log.warning("ingress accept failed: %s", exc)
                await asyncio.sleep(0.05)  # e.g. EMFILE: back off instead of spinning
                continue
            prepare_accepted(client)
            peer = str(addr[0])
            if (
                len(self._connections) >= self.settings.max_connections
                or self._per_peer[peer] >= self.settings.max_connections_per_peer
            ):
                self._reject(client, peer, None, "over_limit", "connection limit reached")
                continue
            handle = RelayHandle()
            task = asyncio.create_task(self._serve(client, peer, handle))
            self._connections[task] = handle
            self._per_peer[peer] += 1
            self.metrics.active.labels(INGRESS).inc()
            task.add_done_callback(functools.partial(self._forget, peer=peer))

    def _forget(self, task: asyncio.Task[None], *, peer: str) -> None:
        self._connections.pop(task, None)
        self._per_peer[peer] -= 1
        if self._per_peer[peer] <= 0:
            del self._per_peer[peer]
        self.metrics.active.labels(INGRESS).dec()

    def stop_accepting(self) -> None:
        if self._accept_task is not None:
            self._accept_task.cancel()
            self._accept_task = None
        close_quietly(self._listener)

    async def drain(self, deadline: float) -> int:
        """Wait for live connections up to ``deadline`` s, then abort the rest."""
        pending = set(self._connections)
        if pending:
            _, still = await asyncio.wait(pending, timeout=deadline)
            for task in still:
                self._connections[task].abort()
                task.cancel()
            if still:
                await asyncio.wait(still, timeout=1.0)
            return len(still)
        return 0

    def _reject(
        self,
        client: socket.socket,
        peer: str,
        service: str | None,
        outcome: str,
        why: str,
        alert: bytes = b"",
    ) -> None:
        if alert:
            with contextlib.suppress(OSError):
                client.send(alert)
        close_quietly(client)
        self.metrics.connections.labels(INGRESS, "", service or "", outcome).inc()
        log.warning(
            "ingress reject peer=%s service=%s outcome=%s: %s", peer, service or "-", outcome, why
        )

    async def _read_hello(self, client: socket.socket) -> tuple[ClientHello, bytes]:
        loop = asyncio.get_running_loop()
        parser = ClientHelloParser()
        while True:
            data = await loop.sock_recv(client, HELLO_READ)
            if not data:
                raise ConnectionResetError("peer closed before its ClientHello completed")
            result = parser.feed(data)
            if isinstance(result, ClientHello):
                return result, parser.raw

    async def _serve(self, client: socket.socket, peer: str, handle: RelayHandle) -> None:
        config = self.config  # a reload must not change this connection's view
        try:
            hello, initial = await asyncio.wait_for(
                self._read_hello(client), self.settings.client_hello_timeout
            )
        except TimeoutError:
            self.metrics.handshake_failures.labels(INGRESS, "client_hello_timeout").inc()
            return self._reject(
                client, peer, None, "client_hello_timeout", "no ClientHello in time"
            )
        except ClientHelloError as exc:
            self.metrics.handshake_failures.labels(INGRESS, exc.reason).inc()
            alert = b"" if isinstance(exc, NotTLSError) else plaintext_alert(ALERT_DECODE_ERROR)
            return self._reject(client, peer, None, "bad_client_hello", str(exc), alert)
        except OSError as exc:
            self.metrics.handshake_failures.labels(INGRESS, "eof").inc()
            return self._reject(client, peer, None, "bad_client_hello", str(exc))
        if hello.sni == PROBE_SNI:
            return await self._answer_probe(client, initial, config)
        route = config.table.lookup(hello.sni)
        if route is None:
            alert = plaintext_alert(ALERT_UNRECOGNIZED_NAME)
            return self._reject(client, peer, None, "unknown_sni", f"sni={hello.sni!r}", alert)
        try:
            if route.mode is Mode.PASSTHROUGH:
                await self._passthrough(client, peer, route, initial, handle)
            else:
                assert config.server_context is not None  # the route file guarantees it
                await self._terminate(client, peer, route, initial, handle, config.server_context)
        finally:
            close_quietly(client)

    async def _connect_backend(self, route: Route) -> socket.socket:
        """Round robin over the route's backends; a backend that refuses is skipped."""
        backends = route.backends
        start = 0
        if len(backends) > 1:
            start = self._next_backend.get(route.sni, 0) % len(backends)
            self._next_backend[route.sni] = start + 1
        last: UpstreamError | None = None
        for i in range(len(backends)):
            try:
                backend, seconds = await connect(
                    backends[(start + i) % len(backends)], self.settings.connect_timeout
                )
            except UpstreamError as exc:
                last = exc
                continue
            self.metrics.connect_latency.labels(INGRESS).observe(seconds)
            return backend
        assert last is not None
        raise last

    async def _passthrough(
        self, client: socket.socket, peer: str, route: Route, initial: bytes, handle: RelayHandle
    ) -> None:
        try:
            backend = await self._connect_backend(route)
        except UpstreamError as exc:
            self.metrics.connect_failures.labels(INGRESS, "local").inc()
            return self._reject(client, peer, route.service, "backend_unreachable", str(exc))
        try:
            loop = asyncio.get_running_loop()
            await loop.sock_sendall(backend, initial)
            await self._relay(client, backend, route.service, handle, tls=None)
            self._finish("", route.service, handle)
        except OSError as exc:
            self._finish("", route.service, handle, "error", str(exc))
        finally:
            close_quietly(backend)

    async def _terminate(
        self,
        client: socket.socket,
        peer: str,
        route: Route,
        initial: bytes,
        handle: RelayHandle,
        context: ssl.SSLContext,
    ) -> None:
        stream = TlsStream(client, context, server_side=True)
        try:
            await asyncio.wait_for(stream.handshake(initial), self.settings.handshake_timeout)
            der = stream.peer_certificate_der()
            if der is None:
                raise HandshakeError("no client certificate", reason="no_client_cert")
            spiffe_id = spiffe_id_from_der(der)
        except TimeoutError:
            self.metrics.handshake_failures.labels(INGRESS, "handshake_timeout").inc()
            return self._reject(client, peer, route.service, "handshake_failed", "TLS timeout")
        except HandshakeError as exc:
            self.metrics.handshake_failures.labels(INGRESS, exc.reason).inc()
            return self._reject(client, peer, route.service, "handshake_failed", str(exc))
        cluster = trust_domain(spiffe_id)
        if not is_allowed(spiffe_id, route.allow):
            # Python's ssl cannot send access_denied after the handshake: close_notify.
            await stream.close_notify()
            return self._reject(
                client, peer, route.service, "denied", f"peer {spiffe_id} not in allow list"
            )
        try:
            backend = await self._connect_backend(route)
        except UpstreamError as exc:
            self.metrics.connect_failures.labels(INGRESS, "local").inc()
            await stream.close_notify()
            return self._reject(client, peer, route.service, "backend_unreachable", str(exc))
        try:
            await self._relay(client, backend, route.service, handle, tls=stream)
            self._finish(cluster, route.service, handle)
        except OSError as exc:
            self._finish(cluster, route.service, handle, "error", str(exc))
        finally:
            close_quietly(backend)

    async def _relay(
        self,
        client: socket.socket,
        backend: socket.socket,
        service: str,
        handle: RelayHandle,
        tls: TlsStream | None,
    ) -> None:
        rx = self.metrics.bytes.labels(INGRESS, service, "rx").inc
        tx = self.metrics.bytes.labels(INGRESS, service, "tx").inc
        idle = self.settings.idle_timeout
        # "splice"/"auto": the process's epoll relay thread owns the established
        # connection (os.splice for passthrough, SSLObject + recv/send for terminate).
        use_thread = self.settings.relay == "splice" or (
            self.settings.relay == "auto" and HAVE_SPLICE
        )
        if tls is None and use_thread:
            await relay_splice(
                client, backend, idle_timeout=idle, handle=handle, a_to_b=rx, b_to_a=tx
            )
            return
        if tls is not None and use_thread:
            await relay_tls(
                tls, backend, idle_timeout=idle, handle=handle, tls_to_plain=rx, plain_to_tls=tx
            )
            return
        front = PlainEndpoint(client) if tls is None else TlsEndpoint(tls)
        await relay_async(
            front, PlainEndpoint(backend), idle_timeout=idle, handle=handle, a_to_b=rx, b_to_a=tx
        )

    def _finish(
        self,
        peer_cluster: str,
        service: str,
        handle: RelayHandle,
        outcome: str = "ok",
        why: str = "",
    ) -> None:
        if outcome == "ok" and handle.idle_expired:
            outcome = "idle_timeout"
        self.metrics.connections.labels(INGRESS, peer_cluster, service, outcome).inc()
        if outcome != "ok":
            log.info("ingress connection service=%s ended: %s %s", service, outcome, why)

    async def _answer_probe(
        self, client: socket.socket, initial: bytes, config: IngressConfig
    ) -> None:
        """Complete a TLS handshake for a peer's health probe, then close."""
        try:
            if config.server_context is not None:
                stream = TlsStream(client, config.server_context, server_side=True)
                with contextlib.suppress(GatewayError, TimeoutError):
                    await asyncio.wait_for(
                        stream.handshake(initial), self.settings.handshake_timeout
                    )
                    await stream.close_notify()
        finally:
            close_quietly(client)
