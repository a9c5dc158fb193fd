"""The epoll + os.splice relay thread over real loopback TCP sockets.

Each case builds client <-> [a | relay | b] <-> server with blocking peers in
threads; no timing assertions, only generous timeouts so a bug fails, not hangs.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import os
import random
import socket
import ssl
import struct
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from gateway_pki import PKI, start_echo

from eastwest_gateway.gateway import Gateway
from eastwest_gateway.routefile import HostPort
from eastwest_gateway.settings import GatewaySettings
from eastwest_gateway.splice_relay import Connection, SpliceRelay, TlsConnection

TIMEOUT = 20.0


def tcp_pair(listener: socket.socket) -> tuple[socket.socket, socket.socket]:
    """(outer, inner): a connected client socket and the accepted end."""
    outer = socket.create_connection(listener.getsockname(), timeout=TIMEOUT)
    inner, _ = listener.accept()
    inner.settimeout(TIMEOUT)
    return outer, inner


@dataclass
class Ends:
    client: socket.socket
    server: socket.socket
    a: socket.socket
    b: socket.socket
    conn: Connection
    finished: threading.Event = field(default_factory=threading.Event)
    rx: list[int] = field(default_factory=list)
    tx: list[int] = field(default_factory=list)

    def wait(self) -> Connection:
        assert self.finished.wait(TIMEOUT), "relay never finished"
        return self.conn

    def close(self) -> None:
        for s in (self.client, self.server, self.a, self.b):
            s.close()


Connect = Callable[..., Ends]


@pytest.fixture
def relay() -> Iterator[SpliceRelay]:
    r = SpliceRelay(name="test-relay")
    yield r
    r.close()


@pytest.fixture
def connect(relay: SpliceRelay) -> Iterator[Connect]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(512)
    made: list[Ends] = []

    def make(idle_timeout: float = 60.0) -> Ends:
        client, a = tcp_pair(listener)
        b, server = tcp_pair(listener)
        finished = threading.Event()
        rx: list[int] = []
        tx: list[int] = []
        conn = relay.add(
            a,
            b,
            idle_timeout=idle_timeout,
            a_to_b=rx.append,
            b_to_a=tx.append,
            on_done=lambda _c: finished.set(),
        )
        ends = Ends(client, server, a, b, conn, finished, rx, tx)
        made.append(ends)
        return ends

    yield make
    for e in made:
        e.wait()  # never close sockets the relay still watches
        e.close()
    listener.close()


def recv_all(sock: socket.socket, limit: int | None = None) -> bytes:
    chunks = []
    got = 0
    while limit is None or got < limit:
        data = sock.recv(1 << 16 if limit is None else min(1 << 16, limit - got))
        if not data:
            break
        chunks.append(data)
        got += len(data)
    return b"".join(chunks)


def in_thread(fn: Callable[[], object]) -> Callable[[], object]:
    box: list[object] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            box.append(fn())
        except BaseException as exc:  # surfaced by join()
            errors.append(exc)

    t = threading.Thread(target=run, daemon=True)
    t.start()

    def join() -> object:
        t.join(TIMEOUT * 2)
        assert not t.is_alive(), "peer thread hung"
        if errors:
            raise errors[0]
        return box[0]

    return join


def test_byte_exact_both_ways_at_once(connect: Connect) -> None:
    e = connect()
    rng = random.Random(5)
    up = rng.randbytes(8 << 20)
    down = rng.randbytes(6 << 20)

    def client_side() -> bytes:
        send = in_thread(lambda: (e.client.sendall(up), e.client.shutdown(socket.SHUT_WR)))
        got = recv_all(e.client)
        send()
        return got

    def server_side() -> bytes:
        send = in_thread(lambda: (e.server.sendall(down), e.server.shutdown(socket.SHUT_WR)))
        got = recv_all(e.server)
        send()
        return got

    c, s = in_thread(client_side), in_thread(server_side)
    assert s() == up
    assert c() == down
    conn = e.wait()
    assert conn.error is None and not conn.idle_expired
    assert sum(e.rx) == len(up) and sum(e.tx) == len(down)  # metrics callbacks


def test_half_close_keeps_the_other_direction_open(connect: Connect) -> None:
    e = connect()
    e.client.sendall(b"request")
    e.client.shutdown(socket.SHUT_WR)
    assert recv_all(e.server) == b"request"  # the client's FIN arrived as EOF
    assert not e.finished.is_set()
    for i in range(3):  # the server->client direction still flows after that
        e.server.sendall(b"part %d;" % i)
        assert recv_all(e.client, 7) == b"part %d;" % i
    e.server.close()
    assert recv_all(e.client) == b""
    assert e.wait().error is None


def test_large_transfer_to_a_slow_reader(connect: Connect) -> None:
    """64 MiB into a reader that starts late: back-pressure (pipe held, EPOLLOUT) then flow."""
    e = connect()
    block = os.urandom(1 << 20)
    started = threading.Event()

    def produce() -> None:
        for i in range(64):
            e.server.sendall(block)
            if i == 8:
                started.set()
        e.server.shutdown(socket.SHUT_WR)

    sender = in_thread(produce)
    assert started.wait(TIMEOUT)  # the relay must have stopped reading: buffers are full
    total = 0
    got = hashlib.sha256()
    while data := e.client.recv(1 << 16):
        total += len(data)
        got.update(data)
    sender()
    assert total == 64 << 20
    want = hashlib.sha256()
    for _ in range(64):
        want.update(block)
    assert got.digest() == want.digest()
    e.client.close()
    e.wait()
    assert sum(e.tx) == 64 << 20


def test_peer_reset_tears_down_both_sides(connect: Connect) -> None:
    e = connect()
    e.client.sendall(b"ping")
    assert recv_all(e.server, 4) == b"ping"
    e.server.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    e.server.close()  # RST
    e.server = socket.socket()  # keep Ends.close() happy
    try:
        rest = recv_all(e.client)
    except ConnectionResetError:
        rest = b""
    assert rest == b""  # the client is not left hanging
    assert e.wait().error is not None  # ECONNRESET from the backend side


def test_many_concurrent_connections(connect: Connect, relay: SpliceRelay) -> None:
    ends = [connect() for _ in range(200)]
    payloads = [os.urandom(1000 + 37 * i) for i in range(len(ends))]
    for e, p in zip(ends, payloads, strict=True):
        e.client.sendall(p)
    assert relay.connections == len(ends)
    for e, p in zip(ends, payloads, strict=True):
        got = recv_all(e.server, len(p))
        assert got == p
        e.server.sendall(got[::-1])
    for e, p in zip(ends, payloads, strict=True):
        assert recv_all(e.client, len(p)) == p[::-1]
        e.client.shutdown(socket.SHUT_WR)
        e.server.shutdown(socket.SHUT_WR)
    for e in ends:
        assert e.wait().error is None
    assert relay.connections == 0


def test_idle_timeout_and_abort(connect: Connect, relay: SpliceRelay) -> None:
    idle = connect(idle_timeout=0.2)
    busy = connect()
    assert idle.wait().idle_expired
    assert recv_all(idle.client) == b""  # shut down towards both peers
    assert recv_all(idle.server) == b""
    busy.client.sendall(b"still here")
    assert recv_all(busy.server, 10) == b"still here"
    relay.abort(busy.conn)
    conn = busy.wait()
    assert not conn.idle_expired
    assert recv_all(busy.client) == b""


def test_close_releases_every_fd() -> None:
    before = len(os.listdir("/proc/self/fd"))
    relay = SpliceRelay(name="test-relay-fds")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    client, a = tcp_pair(listener)
    b, server = tcp_pair(listener)
    done = threading.Event()
    relay.add(
        a,
        b,
        idle_timeout=60,
        a_to_b=lambda n: None,
        b_to_a=lambda n: None,
        on_done=lambda _c: done.set(),
    )
    client.sendall(b"x" * 100_000)
    assert recv_all(server, 100_000) == b"x" * 100_000
    relay.close()  # aborts the live connection, closes pooled pipes, epoll, eventfd
    assert done.is_set()
    for s in (client, server, a, b, listener):
        s.close()
    assert len(os.listdir("/proc/self/fd")) == before


# --- TLS on one side (terminate mode after the handshake) ----------------------------


@dataclass
class TlsEnds:
    client: ssl.SSLSocket
    server: socket.socket
    a: socket.socket
    b: socket.socket
    conn: TlsConnection
    finished: threading.Event
    rx: list[int]
    tx: list[int]

    def wait(self) -> TlsConnection:
        assert self.finished.wait(TIMEOUT), "relay never finished"
        return self.conn


def _server_handshake(
    sock: socket.socket, ctx: ssl.SSLContext
) -> tuple[ssl.SSLObject, ssl.MemoryBIO, ssl.MemoryBIO]:
    """What TlsStream does, blocking: a server-side SSLObject over memory BIOs."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_side=True)
    while True:
        try:
            obj.do_handshake()
            done = True
        except ssl.SSLWantReadError:
            done = False
        if out := outgoing.read():
            sock.sendall(out)
        if done:
            return obj, incoming, outgoing
        incoming.write(sock.recv(65536))


@pytest.fixture
def connect_tls(relay: SpliceRelay, pki: PKI) -> Iterator[Callable[[], TlsEnds]]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    made: list[TlsEnds] = []

    def make() -> TlsEnds:
        raw, a = tcp_pair(listener)
        ctx = pki.workload_client.client_context()
        client_box: list[ssl.SSLSocket] = []
        hs = in_thread(lambda: client_box.append(ctx.wrap_socket(raw)))
        obj, incoming, outgoing = _server_handshake(a, pki.workload_server.server_context())
        hs()
        b, server = tcp_pair(listener)
        finished = threading.Event()
        rx: list[int] = []
        tx: list[int] = []
        conn = relay.add_tls(
            a, b, obj, incoming, outgoing, idle_timeout=60, tls_to_plain=rx.append,
            plain_to_tls=tx.append, on_done=lambda _c: finished.set(),
        )  # fmt: skip
        ends = TlsEnds(client_box[0], server, a, b, conn, finished, rx, tx)
        made.append(ends)
        return ends

    yield make
    for e in made:
        e.wait()
        for s in (e.client, e.server, e.a, e.b):
            s.close()
    listener.close()


def test_tls_byte_exact_both_ways_and_close_notify(connect_tls: Callable[[], TlsEnds]) -> None:
    e = connect_tls()
    up, down = os.urandom(3 << 20), os.urandom(5 << 20)
    sender = in_thread(lambda: e.server.sendall(down))
    e.client.sendall(up)
    assert recv_all(e.server, len(up)) == up
    assert recv_all(e.client, len(down)) == down
    sender()
    # half-close: the client's FIN reaches the backend; the other direction still flows
    socket.socket.shutdown(e.client, socket.SHUT_WR)  # a bare FIN; SSLSocket's would unwrap
    assert recv_all(e.server) == b""
    e.server.sendall(b"after")
    assert recv_all(e.client, 5) == b"after"
    e.server.shutdown(socket.SHUT_WR)
    assert recv_all(e.client) == b""  # close_notify, then EOF
    assert e.wait().error is None
    assert sum(e.rx) == len(up) and sum(e.tx) == len(down) + 5


def test_tls_backend_eof_is_close_notify(connect_tls: Callable[[], TlsEnds]) -> None:
    e = connect_tls()
    e.client.sendall(b"request")
    assert recv_all(e.server, 7) == b"request"
    e.server.sendall(b"response")
    e.server.shutdown(socket.SHUT_WR)
    assert recv_all(e.client) == b"response"  # then a clean close_notify: no SSLError
    e.client.close()
    e.wait()


def test_tls_backend_reset(connect_tls: Callable[[], TlsEnds]) -> None:
    e = connect_tls()
    e.client.sendall(b"ping")
    assert recv_all(e.server, 4) == b"ping"
    e.server.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    e.server.close()
    e.server = socket.socket()
    try:
        rest = e.client.recv(10)
    except (OSError, ssl.SSLError):
        rest = b""
    assert rest == b""  # the client is not left hanging
    assert e.wait().error is not None


@pytest.mark.parametrize("relay_impl", ["auto", "asyncio"])
async def test_egress_originate_end_to_end(tmp_path: Path, pki: PKI, relay_impl: str) -> None:
    """Plaintext in, mTLS out (the TLS session is driven by the relay thread with auto)."""
    remote = await start_echo(pki.workload_server.server_context())
    tls = {"cert": str(pki.east_gw.cert), "key": str(pki.east_gw.key), "ca": str(pki.ca)}
    cluster = {"name": "west", "region": "r", "zone": "z",
               "gateways": [f"127.0.0.1:{remote.port}"]}  # fmt: skip
    routes = {
        "tls": tls,
        "locality": {"region": "r", "zone": "z"},
        "routes": [],
        "egress": [{"listen": "127.0.0.1:0", "sni": "echo.demo.svc.clusterset.local",
                    "mode": "originate", "clusters": [cluster]}],
    }  # fmt: skip
    path = tmp_path / "routes.yaml"
    path.write_text(yaml.safe_dump(routes))
    settings = dataclasses.replace(GatewaySettings(), probe_interval=60.0, relay=relay_impl)  # type: ignore[arg-type]
    gw = Gateway("east", path, settings)
    await gw.start(HostPort("127.0.0.1", 0), None)
    try:
        addr = gw.egress.address(HostPort("127.0.0.1", 0))
        reader, writer = await asyncio.open_connection(addr.host, addr.port)
        payload = os.urandom(2 << 20)
        writer.write(payload)
        await writer.drain()
        assert await asyncio.wait_for(reader.readexactly(len(payload)), 10) == payload
        writer.write_eof()  # -> close_notify to the remote; its EOF comes back as a FIN
        assert await asyncio.wait_for(reader.read(), 10) == b""
        writer.close()
        # the gateway's own identity (the first health probe connects too)
        assert set(remote.peers) == {pki.east_gw.spiffe_id}
        for _ in range(100):
            if gw.egress.metrics.active.labels("egress")._value.get() == 0:
                break
            await asyncio.sleep(0.02)
        rx = gw.metrics.bytes.labels("egress", "demo/echo", "rx")._value.get()
        assert rx == len(payload)
    finally:
        await gw.shutdown()
        remote.kill()
