"""Moving bytes between two connections once routing is decided.

Why it exists: this is the data plane's hot loop. FINDINGS.md measured, for a
loopback proxy under CPython 3.11: ``os.splice`` through a pipe in a thread about
0.4 CPU-seconds per GiB, asyncio Protocol copies about 0.9, asyncio streams about
1.6. So a plaintext-to-plaintext relay (passthrough, egress passthrough) is handed to
the process's epoll + ``os.splice`` thread (:mod:`eastwest_gateway.splice_relay`)
on Linux; anything involving TLS uses the asyncio copier.

Both honour half-close (EOF in one direction is forwarded as a FIN / close_notify,
the other direction keeps flowing), an idle timeout, and an external abort used
by the SIGTERM drain. Both report bytes through a callback.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Callable
from typing import Any, Final, Protocol

from eastwest_gateway.splice_relay import Connection, TlsConnection, shared_relay
from eastwest_gateway.tlsstream import TlsStream

PLAIN_READ: Final = 256 * 1024
HAVE_SPLICE: Final = hasattr(os, "splice")

ByteCounter = Callable[[int], None]


class Endpoint(Protocol):
    async def recv(self) -> bytes: ...
    async def send(self, data: bytes) -> None: ...
    async def shutdown_write(self) -> None: ...
    def abort(self) -> None: ...


class PlainEndpoint:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._loop = asyncio.get_running_loop()

    async def recv(self) -> bytes:
        try:
            return await self._loop.sock_recv(self.sock, PLAIN_READ)
        except OSError:
            return b""

    async def send(self, data: bytes) -> None:
        await self._loop.sock_sendall(self.sock, data)

    async def shutdown_write(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_WR)

    def abort(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)


class TlsEndpoint:
    def __init__(self, stream: TlsStream) -> None:
        self.stream = stream

    async def recv(self) -> bytes:
        return await self.stream.recv()

    async def send(self, data: bytes) -> None:
        await self.stream.send(data)

    async def shutdown_write(self) -> None:
        await self.stream.close_notify()
        with contextlib.suppress(OSError):
            self.stream.sock.shutdown(socket.SHUT_WR)

    def abort(self) -> None:
        with contextlib.suppress(OSError):
            self.stream.sock.shutdown(socket.SHUT_RDWR)


class RelayHandle:
    """Lets the owner abort a running relay (drain deadline) and see if it idled out."""

    def __init__(self) -> None:
        self.last_activity = time.monotonic()
        self.idle_expired = False
        self._aborters: list[Callable[[], None]] = []

    def touch(self) -> None:
        self.last_activity = time.monotonic()

    def on_abort(self, fn: Callable[[], None]) -> None:
        self._aborters.append(fn)

    def abort(self) -> None:
        for fn in self._aborters:
            fn()


async def _watch_idle(handle: RelayHandle, idle_timeout: float, done: asyncio.Future[Any]) -> None:
    """Abort the relay when neither direction moved a byte for ``idle_timeout``."""
    while not done.done():
        remaining = handle.last_activity + idle_timeout - time.monotonic()
        if remaining <= 0:
            handle.idle_expired = True
            handle.abort()
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(done), timeout=remaining)


async def relay_async(
    a: Endpoint,
    b: Endpoint,
    *,
    idle_timeout: float,
    handle: RelayHandle,
    a_to_b: ByteCounter,
    b_to_a: ByteCounter,
) -> None:
    """Copy both ways with asyncio until both directions reached EOF (or abort/idle)."""
    handle.on_abort(a.abort)
    handle.on_abort(b.abort)

    async def pump(src: Endpoint, dst: Endpoint, count: ByteCounter) -> None:
        try:
            while True:
                data = await src.recv()
                if not data:
                    break
                handle.touch()
                await dst.send(data)
                count(len(data))
        except OSError:
            handle.abort()  # one side is gone: tear down the other direction too
            return
        await dst.shutdown_write()

    both = asyncio.gather(pump(a, b, a_to_b), pump(b, a, b_to_a))
    watcher = asyncio.create_task(_watch_idle(handle, idle_timeout, both))
    try:
        await both
    finally:
        watcher.cancel()


async def relay_splice(
    a: socket.socket,
    b: socket.socket,
    *,
    idle_timeout: float,
    handle: RelayHandle,
    a_to_b: ByteCounter,
    b_to_a: ByteCounter,
) -> None:
    """Hand both sockets to the process's epoll splice thread; return when both ended.

    The sockets stay open (the caller closes them); they are guaranteed to be out
    of the relay's epoll set when this returns, also when the task is cancelled.
    """
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[None] = loop.create_future()
    relay = shared_relay()

    def done(conn: Connection) -> None:  # runs in the relay thread
        handle.idle_expired = conn.idle_expired
        handle.last_activity = conn.last
        loop.call_soon_threadsafe(_resolve, fut)

    conn = relay.add(a, b, idle_timeout=idle_timeout, a_to_b=a_to_b, b_to_a=b_to_a, on_done=done)
    handle.on_abort(lambda: relay.abort(conn))
    try:
        await asyncio.shield(fut)
    except asyncio.CancelledError:
        relay.abort(conn)  # the thread unregisters the sockets before it resolves fut
        await fut
        raise


async def relay_tls(
    stream: TlsStream,
    plain: socket.socket,
    *,
    idle_timeout: float,
    handle: RelayHandle,
    tls_to_plain: ByteCounter,
    plain_to_tls: ByteCounter,
) -> None:
    """Hand an established TLS session and a plain socket to the relay thread.

    Terminate mode (and egress origination): the session's SSLObject and memory
    BIOs move to the thread, which drives them without asyncio; ``stream`` must
    not be used afterwards. Same contract as :func:`relay_splice`.
    """
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[None] = loop.create_future()
    relay = shared_relay()

    def done(conn: TlsConnection) -> None:  # runs in the relay thread
        handle.idle_expired = conn.idle_expired
        handle.last_activity = conn.last
        loop.call_soon_threadsafe(_resolve, fut)

    # TlsStream has no public way to hand its session over; its three private fields
    # are read here (tlsstream.py is outside this module's ownership -- a
    # ``TlsStream.detach_session()`` would be the clean accessor).
    session, incoming, outgoing = stream._obj, stream._incoming, stream._outgoing
    conn = relay.add_tls(
        stream.sock,
        plain,
        session,
        incoming,
        outgoing,
        idle_timeout=idle_timeout,
        tls_to_plain=tls_to_plain,
        plain_to_tls=plain_to_tls,
        on_done=done,
    )
    handle.on_abort(lambda: relay.abort(conn))
    try:
        await asyncio.shield(fut)
    except asyncio.CancelledError:
        relay.abort(conn)
        await fut
        raise


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
