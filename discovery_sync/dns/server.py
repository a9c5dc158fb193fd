"""The asyncio shell around `wire.Responder`: one UDP socket and one TCP listener.

UDP answers in the datagram callback (no task per query). TCP follows RFC 7766:
two-octet length prefix, several queries per connection, answered in order, and
an idle timeout so silent clients cannot hold connections forever. Nothing a
client sends can stop the server: the responder never raises, and socket errors
end only that connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading
from dataclasses import dataclass
from typing import cast

from discovery_sync.dns.wire import Responder
from discovery_sync.dns.zone import ZoneData
from discovery_sync.errors import DnsError

TCP_IDLE_TIMEOUT = 10.0  # seconds; RFC 7766 section 6.2.3 suggests "a few seconds"
MAX_TCP_CONNECTIONS = 256
UDP_BUFFER = 4 * 1024 * 1024  # bytes; the kernel caps it at net.core.rmem_max


@dataclass(frozen=True, slots=True)
class Bound:
    host: str
    port: int


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, responder: Responder) -> None:
        self._responder = responder
        self._transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:  # absorb bursts instead of dropping them (NSD: so-rcvbuf)
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_BUFFER)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, UDP_BUFFER)

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        out = self._responder.handle(data)
        if out is not None and self._transport is not None:
            self._transport.sendto(out, addr)

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP unreachable from a client that went away: nothing to do


class _UdpThread:
    """UDP served by a blocking loop in a thread of its own.

    A blocking `recvfrom`/`sendto` loop costs a fraction of asyncio's per-datagram
    callback path (about 1.2x the queries/s with dnsperf on two cores, see
    docs/discovery.md), at the price of holding the GIL while busy: `meshfed dns` uses
    it; the agent, which has other work on its loop, does not by default.
    """

    def __init__(self, responder: Responder, sock: socket.socket) -> None:
        self._responder = responder
        self._sock = sock
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="dns-udp", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        sock, handle = self._sock, self._responder.handle
        while not self._stopping:
            try:
                data, addr = sock.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                if self._stopping:
                    return
                continue
            out = handle(data)
            if out is not None:
                with contextlib.suppress(OSError):
                    sock.sendto(out, addr)

    def close(self) -> None:
        self._stopping = True
        self._thread.join(2 * _POLL)
        self._sock.close()


_POLL = 0.2  # seconds: how often the UDP thread looks at its stop flag


class DnsServer:
    """Serves a zone on UDP and TCP; `update` swaps the zone atomically."""

    def __init__(self, zone: ZoneData, *, udp_thread: bool = False) -> None:
        self.udp_thread = udp_thread
        self._udp_loop: _UdpThread | None = None
        self.responder = Responder(zone)
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._conns: set[asyncio.Task[None]] = set()
        self.bound: Bound | None = None

    def update(self, zone: ZoneData) -> None:
        self.responder.update(zone)

    async def start(self, host: str, port: int) -> Bound:
        """Bind UDP and TCP on the same port (port 0: one the kernel picks for both)."""
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        for _attempt in range(20):
            try:
                transport, _ = await loop.create_datagram_endpoint(
                    lambda: _Udp(self.responder), local_addr=(host, port), family=family
                )
            except OSError as err:
                raise DnsError(f"cannot bind UDP {host}:{port}: {err.strerror}") from err
            udp_port = transport.get_extra_info("sockname")[1]
            try:
                self._tcp = await asyncio.start_server(
                    self._serve_tcp, host, udp_port, family=family, reuse_address=True
                )
            except OSError as err:
                transport.close()
                if port == 0:
                    continue  # the kernel's UDP port is taken for TCP: try another
                raise DnsError(f"cannot bind TCP {host}:{port}: {err.strerror}") from err
            self._udp = transport
            self.bound = Bound(host, udp_port)
            if self.udp_thread:
                self._start_thread(transport)
            return self.bound
        raise DnsError(f"no port free for both UDP and TCP on {host}")

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            if len(self._conns) >= MAX_TCP_CONNECTIONS:
                writer.close()
                return
            self._conns.add(task)
        try:
            while True:
                head = await asyncio.wait_for(reader.readexactly(2), TCP_IDLE_TIMEOUT)
                size = int.from_bytes(head, "big")
                packet = await asyncio.wait_for(reader.readexactly(size), TCP_IDLE_TIMEOUT)
                out = self.responder.handle(packet, tcp=True)
                if out is None:
                    continue
                writer.write(len(out).to_bytes(2, "big") + out)
                await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        finally:
            if task is not None:
                self._conns.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    def _start_thread(self, transport: asyncio.DatagramTransport) -> None:
        """Move the bound UDP socket from the loop to a thread of its own."""
        sock = transport.get_extra_info("socket")
        own = socket.socket(sock.family, socket.SOCK_DGRAM, fileno=os.dup(sock.fileno()))
        transport.close()
        self._udp = None
        own.setblocking(True)
        own.settimeout(_POLL)
        self._udp_loop = _UdpThread(self.responder, own)

    async def close(self) -> None:
        if self._udp_loop is not None:
            await asyncio.to_thread(self._udp_loop.close)
        if self._udp is not None:
            self._udp.close()
        if self._tcp is not None:
            self._tcp.close()
            for task in list(self._conns):
                task.cancel()
            with contextlib.suppress(Exception):
                await self._tcp.wait_closed()
