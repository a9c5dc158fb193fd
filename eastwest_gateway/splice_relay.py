"""One thread, one ``select.epoll`` loop, ``os.splice`` for every passthrough connection.

Why it exists: the per-request cost of the first splice relay (two blocking
threads per connection) was thread wake-ups and GIL hand-offs, not copying; a
keep-alive request through it cost 43 proxy CPU-microseconds against nginx's 15.
Here one daemon thread owns every established plaintext-to-plaintext connection
once routing is done (after the ClientHello, or the egress connect): it waits in
``epoll`` (level-triggered) and moves bytes socket -> pipe -> socket with
``os.splice`` (never through user space). asyncio is not in the hot path; it only
hands a connection over and is told (``call_soon_threadsafe``) when it ended.

Per direction the state machine is: read-enabled while its pipe is empty; one
``splice`` in, one ``splice`` out; if the destination took everything the pipe
goes back to a shared pool (so thousands of idle connections hold no pipes and a
busy thread mostly reuses one or two), otherwise the direction keeps the pipe,
stops reading its source and waits for ``EPOLLOUT`` on its destination
(back-pressure). Level-triggered readiness means one splice per readiness event
and no extra call that ends in ``EAGAIN``.

Semantics kept from the threaded relay: half-close (EOF one way becomes
``shutdown(SHUT_WR)`` the other way once the pipe is empty; the other direction
keeps flowing), peer reset or any socket error tears both sides down
(``shutdown(SHUT_RDWR)``), an idle timeout per connection, and an abort the owner
uses for the SIGTERM drain. Byte counts are accumulated per connection and
reported through the owner's callbacks when the connection ends and at every
sweep (at most once a second), not per splice: a Prometheus ``inc`` costs about
as much as a splice.

The owner must not close the sockets before the completion callback ran: the
thread unregisters them from epoll first, so an fd number reused by a new socket
can never be confused with an old connection.
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import os
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable
from typing import Final

PIPE_SIZE: Final = 1 << 20
"""Requested pipe capacity (F_SETPIPE_SZ; /proc/sys/fs/pipe-max-size caps it, 1 MiB by
default). A bigger pipe moves more per splice on bulk transfers; it costs nothing while
empty because pipe pages are allocated on demand."""
SPLICE_MAX: Final = 1 << 20
POOL_MAX: Final = 64
"""Idle pipes kept for reuse; more are closed (each pipe is two fds)."""
MAX_EVENTS: Final = 1024
SWEEP_MAX: Final = 1.0
"""Idle check and byte-count flush interval, at most (shorter for short idle timeouts)."""

_IN: Final = select.EPOLLIN
_OUT: Final = select.EPOLLOUT
_FLAGS: Final = os.SPLICE_F_MOVE | os.SPLICE_F_NONBLOCK if hasattr(os, "splice") else 0

ByteCounter = Callable[[int], None]


class _Dir:
    """One direction of one connection: bytes from ``src`` to ``dst``."""

    __slots__ = ("count", "dst", "eof", "moved", "pending", "pipe", "src")

    def __init__(self, src: int, dst: int, count: ByteCounter) -> None:
        self.src = src
        self.dst = dst
        self.pipe: tuple[int, int] | None = None  # held only while bytes wait in it
        self.pending = 0
        self.eof = False
        self.moved = 0  # bytes not yet reported to ``count``
        self.count = count


class Connection:
    """A relayed pair of sockets; created by :meth:`SpliceRelay.add`."""

    __slots__ = (
        "a",
        "ab",
        "b",
        "ba",
        "done",
        "error",
        "idle_expired",
        "idle_timeout",
        "last",
        "masks",
        "on_done",
    )

    def __init__(
        self,
        a: socket.socket,
        b: socket.socket,
        idle_timeout: float,
        a_to_b: ByteCounter,
        b_to_a: ByteCounter,
        on_done: Callable[[Connection], None],
    ) -> None:
        self.a = a
        self.b = b
        af, bf = a.fileno(), b.fileno()
        self.ab = _Dir(af, bf, a_to_b)
        self.ba = _Dir(bf, af, b_to_a)
        self.masks = [0, 0]  # registered epoll mask of a, b (0: not registered)
        self.last = time.monotonic()
        self.idle_timeout = idle_timeout
        self.on_done = on_done
        self.done = False
        self.idle_expired = False
        self.error: OSError | None = None

    def flush_counts(self) -> None:
        for d in (self.ab, self.ba):
            if d.moved:
                n, d.moved = d.moved, 0
                d.count(n)


class SpliceRelay:
    """The relay thread. Thread-safe entry points: :meth:`add`, :meth:`abort`, :meth:`close`."""

    def __init__(self, name: str = "meshfed-relay") -> None:
        self._ep = select.epoll()
        self._wake_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._ep.register(self._wake_fd, _IN)
        self._commands: collections.deque[tuple[str, AnyConnection | None]] = collections.deque()
        self._fds: dict[int, tuple[AnyConnection, int]] = {}
        self._conns: set[AnyConnection] = set()
        self._pool: list[tuple[int, int]] = []
        self._sweep = SWEEP_MAX
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    @property
    def connections(self) -> int:
        return len(self._conns)

    # --- called from any thread --------------------------------------------------------

    def add(
        self,
        a: socket.socket,
        b: socket.socket,
        *,
        idle_timeout: float,
        a_to_b: ByteCounter,
        b_to_a: ByteCounter,
        on_done: Callable[[Connection], None],
    ) -> Connection:
        """Relay between two connected sockets until both directions ended.

        ``on_done(conn)`` runs in the relay thread once the sockets are no longer
        watched; only then may the owner close them.
        """
        a.setblocking(False)
        b.setblocking(False)
        conn = Connection(a, b, idle_timeout, a_to_b, b_to_a, on_done)
        self._post("add", conn)
        return conn

    def add_tls(
        self,
        tls: socket.socket,
        plain: socket.socket,
        session: ssl.SSLObject,
        incoming: ssl.MemoryBIO,
        outgoing: ssl.MemoryBIO,
        *,
        idle_timeout: float,
        tls_to_plain: ByteCounter,
        plain_to_tls: ByteCounter,
        on_done: Callable[[TlsConnection], None],
    ) -> TlsConnection:
        """Relay plaintext between an established TLS session (over memory BIOs on
        ``tls``) and the plain socket ``plain``; same contract as :meth:`add`. Bytes
        already in ``incoming`` or buffered in ``session`` are relayed first."""
        tls.setblocking(False)
        plain.setblocking(False)
        conn = TlsConnection(
            tls, plain, session, incoming, outgoing, idle_timeout, tls_to_plain, plain_to_tls,
            on_done,
        )  # fmt: skip
        self._post("add", conn)
        return conn

    def abort(self, conn: AnyConnection) -> None:
        """Tear ``conn`` down (both sockets shut down); a no-op once it ended."""
        self._post("abort", conn)

    def close(self) -> None:
        """Abort every connection and stop the thread (tests; the process-wide relay lives on)."""
        self._post("close", None)
        self._thread.join(5)

    def _post(self, what: str, conn: AnyConnection | None) -> None:
        self._commands.append((what, conn))
        os.eventfd_write(self._wake_fd, 1)

    # --- the relay thread --------------------------------------------------------------

    def _run(self) -> None:
        poll = self._ep.poll
        fds = self._fds
        wake = self._wake_fd
        monotonic = time.monotonic
        next_sweep = monotonic() + self._sweep
        try:
            while not self._closed:
                timeout = max(next_sweep - monotonic(), 0.0) if self._conns else -1.0
                try:
                    events = poll(timeout, MAX_EVENTS)
                except InterruptedError:  # pragma: no cover - PEP 475 retries for us
                    continue
                now = monotonic()
                for fd, ev in events:
                    entry = fds.get(fd)
                    if entry is None:
                        if fd == wake:
                            self._commands_ready()
                        continue
                    conn, side = entry
                    conn.last = now
                    if isinstance(conn, TlsConnection):
                        conn.ready(self, side, ev)
                    elif side == 0:
                        self._ready(conn, conn.ab, conn.ba, ev)
                    else:
                        self._ready(conn, conn.ba, conn.ab, ev)
                if now >= next_sweep or not self._conns:
                    self._sweep_idle(now)
                    next_sweep = now + self._sweep
        finally:
            for conn in list(self._conns):
                self.finish(conn, shutdown=True)
            for r, w in self._pool:
                os.close(r)
                os.close(w)
            self._pool.clear()
            self._ep.close()
            os.close(wake)

    def _commands_ready(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.eventfd_read(self._wake_fd)
        while self._commands:
            what, conn = self._commands.popleft()
            if what == "close":
                self._closed = True
            elif conn is None or conn.done:
                continue
            elif what == "add":
                self._conns.add(conn)
                self._fds[conn.a.fileno()] = (conn, 0)
                self._fds[conn.b.fileno()] = (conn, 1)
                if conn.idle_timeout / 4 < self._sweep:
                    self._sweep = max(conn.idle_timeout / 4, 0.01)
                conn.last = time.monotonic()
                if isinstance(conn, TlsConnection):
                    conn.start(self)
                else:
                    self._update(conn)
            elif what == "abort":
                self.finish(conn, shutdown=True)

    def _ready(self, conn: Connection, out_of: _Dir, into: _Dir, ev: int) -> None:
        """Socket ``out_of.src`` (== ``into.dst``) reported ``ev``."""
        # writable, or an error the splice will surface
        if into.pending and ev & ~_IN and not self._flush(conn, into):
            return
        if not out_of.pending and not out_of.eof and ev & ~_OUT and not self._pump(conn, out_of):
            return
        self._update(conn)

    def _pump(self, conn: Connection, d: _Dir) -> bool:
        """Move what ``d.src`` has into ``d.dst``; False if the connection ended."""
        pipe = self._pool.pop() if self._pool else _new_pipe()
        try:
            n = os.splice(d.src, pipe[1], SPLICE_MAX, flags=_FLAGS)
        except BlockingIOError:
            self._pool.append(pipe)
            return True
        except OSError as exc:
            self._pool.append(pipe)
            return self._fail(conn, exc)
        if n == 0:
            self._pool.append(pipe)
            d.eof = True
            socket_shutdown(conn, d.dst)
            return self._maybe_done(conn)
        d.moved += n
        try:
            m = os.splice(pipe[0], d.dst, n, flags=_FLAGS)
        except BlockingIOError:
            m = 0
        except OSError as exc:
            _close_pipe(pipe)  # it still holds bytes: not reusable
            return self._fail(conn, exc)
        if m == n:
            self._pool.append(pipe) if len(self._pool) < POOL_MAX else _close_pipe(pipe)
        else:
            d.pipe = pipe
            d.pending = n - m
        return True

    def _flush(self, conn: Connection, d: _Dir) -> bool:
        """Write more of ``d``'s pipe to ``d.dst``; False if the connection ended."""
        pipe = d.pipe
        assert pipe is not None
        try:
            m = os.splice(pipe[0], d.dst, d.pending, flags=_FLAGS)
        except BlockingIOError:
            return True
        except OSError as exc:
            return self._fail(conn, exc)
        d.pending -= m
        if d.pending == 0:
            d.pipe = None
            self._pool.append(pipe) if len(self._pool) < POOL_MAX else _close_pipe(pipe)
            if d.eof:  # an EOF seen while bytes were queued: forward it now
                socket_shutdown(conn, d.dst)
                return self._maybe_done(conn)
        return True

    def _maybe_done(self, conn: Connection) -> bool:
        ab, ba = conn.ab, conn.ba
        if ab.eof and ba.eof and not ab.pending and not ba.pending:
            self.finish(conn, shutdown=False)
            return False
        return True

    def _fail(self, conn: Connection, exc: OSError) -> bool:
        conn.error = exc
        self.finish(conn, shutdown=True)
        return False

    def _update(self, conn: Connection) -> None:
        """(Re)register both sockets for exactly the readiness their directions wait for."""
        ab, ba = conn.ab, conn.ba
        a_mask = (0 if ab.pending or ab.eof else _IN) | (_OUT if ba.pending else 0)
        b_mask = (0 if ba.pending or ba.eof else _IN) | (_OUT if ab.pending else 0)
        masks = conn.masks
        if a_mask != masks[0]:
            self.set_mask(ab.src, masks[0], a_mask)
            masks[0] = a_mask
        if b_mask != masks[1]:
            self.set_mask(ba.src, masks[1], b_mask)
            masks[1] = b_mask

    def set_mask(self, fd: int, old: int, new: int) -> None:
        # A socket nobody waits on is unregistered, not modified to 0: epoll reports
        # EPOLLHUP/EPOLLERR regardless of the mask, which would spin a level-triggered loop.
        if new == 0:
            self._ep.unregister(fd)
        elif old == 0:
            self._ep.register(fd, new)
        else:
            self._ep.modify(fd, new)

    def finish(self, conn: AnyConnection, *, shutdown: bool) -> None:
        """Stop watching ``conn`` (optionally shutting both sockets down), report it ended."""
        if conn.done:
            return
        conn.done = True
        for i, sock in enumerate((conn.a, conn.b)):
            fd = sock.fileno()
            if conn.masks[i]:
                with contextlib.suppress(OSError, ValueError):
                    self._ep.unregister(fd)
                conn.masks[i] = 0
            if self._fds.get(fd, (None, 0))[0] is conn:
                del self._fds[fd]
        if isinstance(conn, Connection):
            for d in (conn.ab, conn.ba):
                if d.pipe is not None:
                    _close_pipe(d.pipe)
                    d.pipe = None
                    d.pending = 0
        self._conns.discard(conn)
        if shutdown:
            for s in (conn.a, conn.b):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
        try:
            conn.flush_counts()
        finally:
            if isinstance(conn, TlsConnection):
                conn.on_done(conn)
            else:
                conn.on_done(conn)

    def _sweep_idle(self, now: float) -> None:
        for conn in list(self._conns):
            if now - conn.last >= conn.idle_timeout:
                conn.idle_expired = True
                self.finish(conn, shutdown=True)
            else:
                conn.flush_counts()
        if not self._conns:
            self._sweep = SWEEP_MAX


class TlsConnection:
    """A TLS session (memory BIOs over socket ``a``) relayed to the plain socket ``b``.

    Terminate mode after the handshake (and egress origination): ciphertext is read
    and written with plain ``recv``/``send`` on ``a`` and run through the
    :class:`ssl.SSLObject`; plaintext goes to and from ``b`` with ``recv``/``send``.
    A direction holding unsent bytes stops reading its source (back-pressure), as in
    :class:`Connection`. EOF towards the TLS peer is a ``close_notify`` then
    ``shutdown(SHUT_WR)``; a ``close_notify`` or FIN from it is a FIN towards ``b``.
    """

    __slots__ = (
        "a",
        "b",
        "done",
        "down",
        "down_eof",
        "error",
        "idle_expired",
        "idle_timeout",
        "incoming",
        "last",
        "masks",
        "on_done",
        "outgoing",
        "rx",
        "rx_count",
        "session",
        "tx",
        "tx_count",
        "up",
        "up_eof",
    )

    def __init__(
        self,
        a: socket.socket,
        b: socket.socket,
        session: ssl.SSLObject,
        incoming: ssl.MemoryBIO,
        outgoing: ssl.MemoryBIO,
        idle_timeout: float,
        rx_count: ByteCounter,
        tx_count: ByteCounter,
        on_done: Callable[[TlsConnection], None],
    ) -> None:
        self.a = a
        self.b = b
        self.session = session
        self.incoming = incoming
        self.outgoing = outgoing
        self.idle_timeout = idle_timeout
        self.rx_count = rx_count
        self.tx_count = tx_count
        self.on_done = on_done
        self.up = b""  # plaintext waiting for b
        self.down = b""  # ciphertext waiting for a
        self.up_eof = False  # the TLS peer ended its side (close_notify or FIN)
        self.down_eof = False  # b ended its side
        self.rx = 0  # plaintext bytes from the TLS peer, not yet reported
        self.tx = 0  # plaintext bytes towards it, not yet reported
        self.masks = [0, 0]
        self.last = time.monotonic()
        self.done = False
        self.idle_expired = False
        self.error: OSError | None = None

    def flush_counts(self) -> None:
        if self.rx:
            n, self.rx = self.rx, 0
            self.rx_count(n)
        if self.tx:
            n, self.tx = self.tx, 0
            self.tx_count(n)

    def start(self, relay: SpliceRelay) -> None:
        try:
            self._decrypt(relay)  # the handshake's last read may have carried records
        except (OSError, ssl.SSLError) as exc:
            self._fail(relay, exc)
            return
        self._update(relay)

    def _fail(self, relay: SpliceRelay, exc: OSError) -> None:
        self.error = exc
        relay.finish(self, shutdown=True)

    def ready(self, relay: SpliceRelay, side: int, ev: int) -> None:
        try:
            if side == 0:
                if self.down and ev & ~_IN:
                    self.down = self._send(self.a, self.down)
                    if not self.down and self.down_eof:
                        self.a.shutdown(socket.SHUT_WR)
                if not self.up and not self.up_eof and ev & ~_OUT:
                    data = self.a.recv(READ_SIZE)
                    if data:
                        self.incoming.write(data)
                    else:
                        self.up_eof = True
                    self._decrypt(relay)
            else:
                if self.up and ev & ~_IN:
                    self.up = self._send(self.b, self.up)
                    if not self.up and self.up_eof:
                        self.b.shutdown(socket.SHUT_WR)
                if not self.down and not self.down_eof and ev & ~_OUT:
                    data = self.b.recv(READ_SIZE)
                    if data:
                        self.tx += len(data)
                        self.session.write(data)
                    else:
                        self.down_eof = True
                        with contextlib.suppress(ssl.SSLError, ValueError):
                            self.session.unwrap()  # queue close_notify
                    out = self.outgoing.read()
                    self.down = self._send(self.a, out) if out else b""
                    if not self.down and self.down_eof:
                        self.a.shutdown(socket.SHUT_WR)
        except BlockingIOError:
            pass
        except (OSError, ssl.SSLError) as exc:
            self._fail(relay, exc)
            return
        if self.done:
            return
        if self.up_eof and self.down_eof and not self.up and not self.down:
            relay.finish(self, shutdown=False)
            return
        self._update(relay)

    def _decrypt(self, relay: SpliceRelay) -> None:
        """Plaintext out of the session into ``up`` (sent at once if ``b`` takes it)."""
        chunks = []
        try:
            while True:
                data = self.session.read(READ_SIZE)
                if not data:  # close_notify received (the ssl module returns b"")
                    self.up_eof = True
                    break
                chunks.append(data)
        except ssl.SSLWantReadError:
            pass
        except ssl.SSLZeroReturnError:
            self.up_eof = True  # close_notify
        out = self.outgoing.read()  # e.g. a KeyUpdate answer
        if out:
            self.down = self.down + out
        plain = b"".join(chunks)
        if plain:
            self.rx += len(plain)
            self.up = self._send(self.b, plain)
        if self.up_eof and not self.up:
            with contextlib.suppress(OSError):
                self.b.shutdown(socket.SHUT_WR)

    @staticmethod
    def _send(sock: socket.socket, data: bytes) -> bytes:
        """Send what the socket takes now; the rest is returned."""
        try:
            n = sock.send(data)
        except BlockingIOError:
            return data
        return data[n:]

    def _update(self, relay: SpliceRelay) -> None:
        a_mask = (0 if self.up or self.up_eof else _IN) | (_OUT if self.down else 0)
        b_mask = (0 if self.down or self.down_eof else _IN) | (_OUT if self.up else 0)
        masks = self.masks
        if a_mask != masks[0]:
            relay.set_mask(self.a.fileno(), masks[0], a_mask)
            masks[0] = a_mask
        if b_mask != masks[1]:
            relay.set_mask(self.b.fileno(), masks[1], b_mask)
            masks[1] = b_mask


AnyConnection = Connection | TlsConnection
READ_SIZE: Final = 256 * 1024


def socket_shutdown(conn: Connection, fd: int) -> None:
    """Forward an EOF: ``shutdown(SHUT_WR)`` on the socket whose fd is ``fd``."""
    s = conn.a if conn.a.fileno() == fd else conn.b
    with contextlib.suppress(OSError):
        s.shutdown(socket.SHUT_WR)


def _new_pipe() -> tuple[int, int]:
    r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    with contextlib.suppress(OSError):
        fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
    return r, w


def _close_pipe(pipe: tuple[int, int]) -> None:
    os.close(pipe[0])
    os.close(pipe[1])


_shared: SpliceRelay | None = None
_shared_lock = threading.Lock()


def shared_relay() -> SpliceRelay:
    """The process-wide relay thread, started on first use."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = SpliceRelay()
        return _shared
