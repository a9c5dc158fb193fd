"""Moving bytes between two connections once routing is decided.

Why it exists: this is the data plane's hot loop. FINDINGS.md measured, for a
loopback proxy under CPython 3.11: ``os.splice`` through a pipe in a thread about
0.4 CPU-seconds per GiB, asyncio Protocol copies about 0.9, asyncio streams about
1.6. So a plaintext-to-plaintext relay (passthrough, egress passthrough) uses
splice threads on Linux; anything involving TLS uses the asyncio copier.

Both honour half-close (EOF in one direction is forwarded as a FIN / close_notify,
the other direction keeps flowing), an idle timeout, and an external abort used
by the SIGTERM drain. Both report bytes through a callback.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any, Final, Protocol

from eastwest_gateway.tlsstream import TlsStream

SPLICE_CHUNK: Final = 1 << 20  # ask for up to 1 MiB; the pipe (64 KiB default) bounds it
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


def _splice_one_way(
    src: socket.socket,
    dst: socket.socket,
    handle: RelayHandle,
    count: ByteCounter,
    peer_failed: Callable[[], None],
) -> None:
    read_end, write_end = os.pipe()
    try:
        while True:
            n = os.splice(src.fileno(), write_end, SPLICE_CHUNK)
            if n == 0:
                break
            handle.last_activity = time.monotonic()
            left = n
            while left:
                left -= os.splice(read_end, dst.fileno(), left)
            count(n)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)
    except OSError:
        peer_failed()
    finally:
        os.close(read_end)
        os.close(write_end)


async def relay_splice(
    a: socket.socket,
    b: socket.socket,
    *,
    idle_timeout: float,
    handle: RelayHandle,
    a_to_b: ByteCounter,
    b_to_a: ByteCounter,
) -> None:
    """Copy both ways with os.splice in two threads; the sockets become blocking."""
    loop = asyncio.get_running_loop()

    def kill() -> None:
        for s in (a, b):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    handle.on_abort(kill)
    a.setblocking(True)
    b.setblocking(True)
    futures: list[asyncio.Future[None]] = []
    for src, dst, count in ((a, b, a_to_b), (b, a, b_to_a)):
        fut: asyncio.Future[None] = loop.create_future()

        def run(
            src: socket.socket = src,
            dst: socket.socket = dst,
            count: ByteCounter = count,
            fut: asyncio.Future[None] = fut,
        ) -> None:
            try:
                _splice_one_way(src, dst, handle, count, kill)
            finally:
                loop.call_soon_threadsafe(_resolve, fut)

        futures.append(fut)
        threading.Thread(target=run, name="meshfed-splice", daemon=True).start()
    both = asyncio.gather(*futures)
    watcher = asyncio.create_task(_watch_idle(handle, idle_timeout, both))
    try:
        await asyncio.shield(both)
    except asyncio.CancelledError:
        kill()  # the threads notice at once; let them finish before the sockets close
        await both
        raise
    finally:
        watcher.cancel()


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
