"""Socket plumbing shared by ingress, egress and probes.

Why it exists: the gateway works on raw non-blocking sockets (not asyncio
streams) so that a connection can be handed to splice threads or to a MemoryBIO
TLS session after its first bytes were read; creating and connecting those
sockets, and translating ``OSError`` into gateway errors, happens here once.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from typing import Final

from eastwest_gateway.errors import UpstreamError
from eastwest_gateway.routefile import HostPort

LISTEN_BACKLOG: Final = 1024  # the kernel caps it at net.core.somaxconn


def open_listener(addr: HostPort) -> socket.socket:
    """A bound, listening, non-blocking TCP socket (SO_REUSEADDR for quick restarts)."""
    family = socket.AF_INET6 if ":" in addr.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((addr.host, addr.port))
        sock.listen(LISTEN_BACKLOG)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def prepare_accepted(sock: socket.socket) -> None:
    sock.setblocking(False)
    # Interactive request/response traffic: do not let Nagle delay small writes.
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


async def resolve(addr: HostPort) -> list[tuple[int, tuple[str, int]]]:
    """Every address ``addr.host`` resolves to (gateway hosts may be DNS names)."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(addr.host, addr.port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise UpstreamError(f"cannot resolve {addr}: {exc}") from exc
    seen: list[tuple[int, tuple[str, int]]] = []
    for family, _, _, _, sockaddr in infos:
        entry = (int(family), (str(sockaddr[0]), int(sockaddr[1])))
        if entry not in seen:
            seen.append(entry)
    return seen


async def connect(addr: HostPort, timeout: float) -> tuple[socket.socket, float]:
    """Connect to the first address of ``addr`` that answers; returns (socket, seconds)."""
    loop = asyncio.get_running_loop()
    started = time.monotonic()
    last: Exception | None = None
    for family, sockaddr in await resolve(addr):
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            await asyncio.wait_for(loop.sock_connect(sock, sockaddr), timeout)
        except (OSError, TimeoutError) as exc:
            sock.close()
            last = exc
            continue
        prepare_accepted(sock)
        return sock, time.monotonic() - started
    raise UpstreamError(f"cannot connect to {addr}: {last or 'no address'}") from last


def close_quietly(*socks: socket.socket | None) -> None:
    for s in socks:
        if s is not None:
            with contextlib.suppress(OSError):
                s.close()
