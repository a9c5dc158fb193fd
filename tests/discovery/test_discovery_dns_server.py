"""The DNS server over real UDP and TCP sockets: dnspython, dig, malformed packets."""

from __future__ import annotations

import asyncio
import random
import shutil
import socket
import struct

import dns.asyncquery
import dns.flags
import dns.message
import dns.rcode
from discovery_views import CALLER, clusterset, ep, headless, view

from discovery_sync.dns.server import DnsServer
from discovery_sync.dns.zone import compile_zone

NAME = "echo.demo.svc.clusterset.local"


def where(server: DnsServer) -> tuple[str, int]:
    assert server.bound is not None
    return server.bound.host, server.bound.port


async def test_udp_and_tcp_queries(dns_server: DnsServer) -> None:
    host, port = where(dns_server)
    q = dns.message.make_query(NAME, "A")
    for query in (dns.asyncquery.udp, dns.asyncquery.tcp):
        r = await query(q, host, port=port, timeout=2)
        assert r.rcode() == dns.rcode.NOERROR
        assert [rd.to_text() for rd in r.answer[0]] == ["198.18.0.10"]


async def test_cached_answers_echo_id_and_letter_case(dns_server: DnsServer) -> None:
    host, port = where(dns_server)
    for name in (NAME, NAME.upper(), "EcHo.DeMo.svc.clusterset.local"):
        q = dns.message.make_query(name, "A")
        r = await dns.asyncquery.udp(q, host, port=port, timeout=2)
        assert r.id == q.id and r.question[0].name.to_text() == name + "."
        assert str(r.question[0].name) == name + "."
        assert r.flags & dns.flags.RD
    assert dns_server.responder.hits >= 2


async def test_zone_update_drops_the_cache(dns_server: DnsServer) -> None:
    host, port = where(dns_server)
    q = dns.message.make_query(NAME, "A")
    await dns.asyncquery.udp(q, host, port=port, timeout=2)
    dns_server.update(compile_zone(view(clusterset(ips=("198.18.0.99",))), CALLER))
    r = await dns.asyncquery.udp(q, host, port=port, timeout=2)
    assert [rd.to_text() for rd in r.answer[0]] == ["198.18.0.99"]


async def test_truncated_over_udp_full_over_tcp() -> None:
    eps = tuple(ep("west", "demo", "big", f"10.9.0.{i + 1}", "us-west-1a") for i in range(120))
    server = DnsServer(compile_zone(view(headless("big", eps=eps)), CALLER))
    host, port = (await server.start("127.0.0.1", 0)).host, server.bound.port  # type: ignore[union-attr]
    try:
        q = dns.message.make_query("big.demo.svc.clusterset.local", "A")
        r = await dns.asyncquery.udp(q, host, port=port, timeout=2, ignore_trailing=True)
        assert r.flags & dns.flags.TC
        q = dns.message.make_query("big.demo.svc.clusterset.local", "A", use_edns=0, payload=4096)
        r = await dns.asyncquery.udp(q, host, port=port, timeout=2)
        assert r.flags & dns.flags.TC  # 120 A records exceed our 1232-byte EDNS limit
        r = await dns.asyncquery.tcp(q, host, port=port, timeout=2)
        assert not r.flags & dns.flags.TC and len(r.answer[0]) == 120
    finally:
        await server.close()


async def test_several_queries_on_one_tcp_connection(dns_server: DnsServer) -> None:
    host, port = where(dns_server)
    reader, writer = await asyncio.open_connection(host, port)
    names = [NAME, "db.demo.svc.clusterset.local", "nope.demo.svc.clusterset.local"]
    for name in names:  # pipelined: all sent before any answer is read (RFC 7766)
        wire = dns.message.make_query(name, "A").to_wire()
        writer.write(struct.pack("!H", len(wire)) + wire)
    await writer.drain()
    rcodes = []
    for _ in names:
        size = struct.unpack("!H", await reader.readexactly(2))[0]
        rcodes.append(dns.message.from_wire(await reader.readexactly(size)).rcode())
    assert rcodes == [dns.rcode.NOERROR, dns.rcode.NOERROR, dns.rcode.NXDOMAIN]
    writer.close()


def malformed_corpus() -> list[bytes]:
    good = dns.message.make_query(NAME, "A", use_edns=0).to_wire()
    rng = random.Random(6)
    corpus = [
        b"",
        b"\x00",
        good[:11],  # short header
        good[:12],  # header claiming one question, nothing after
        good[:20],  # cut inside the name
        good[:-3],  # cut inside the OPT record
        good + b"\x00\x00",  # trailing garbage
        good[:12] + b"\xc0\x0c" + good[-15:],  # compression loop in the question
        good[:12] + b"\x40" + b"a" * 64 + b"\x00\x00\x01\x00\x01",  # label too long
        good[:4] + b"\xff\xff" + good[6:],  # 65535 questions
        good[:10] + b"\x00\x05" + good[12:],  # 5 additional records claimed
        good[:2] + b"\x80" + good[3:],  # a response (QR set): dropped
        b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00" + b"\x3f" + b"x" * 63 * 5,
    ]
    for _ in range(300):  # random bit flips and cuts of a good query
        data = bytearray(good)
        for _ in range(rng.randint(1, 6)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        corpus.append(bytes(data[: rng.randint(0, len(data))]))
    for _ in range(100):
        corpus.append(bytes(rng.randrange(256) for _ in range(rng.randint(0, 600))))
    return corpus


async def test_malformed_packets_get_formerr_or_nothing_and_never_stop_it(
    dns_server: DnsServer,
) -> None:
    host, port = where(dns_server)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    answered = 0
    probe = dns.message.make_query(NAME, "A")
    for packet in malformed_corpus():
        # Each packet is followed by a good query; whatever comes back before the
        # probe's answer is the packet's answer (loopback keeps datagram order).
        probe.id = (probe.id + 1) % 65536
        await loop.sock_sendto(sock, packet, (host, port))
        await loop.sock_sendto(sock, probe.to_wire(), (host, port))
        while True:
            data = await asyncio.wait_for(loop.sock_recv(sock, 65535), 2)
            reply = dns.message.from_wire(data, ignore_trailing=True)
            if reply.id == probe.id and reply.answer:
                break
            answered += 1
            assert data[:2] == packet[:2] and data[2] & 0x80  # same id, a response
            assert data[3] & 0x0F in (0, 1, 2, 3, 4, 5)
    sock.close()
    assert answered > 50
    # still serving, over both transports
    q = dns.message.make_query(NAME, "A")
    assert (await dns.asyncquery.udp(q, host, port=port, timeout=2)).answer
    assert (await dns.asyncquery.tcp(q, host, port=port, timeout=2)).answer


async def test_malformed_tcp_frames(dns_server: DnsServer) -> None:
    host, port = where(dns_server)
    for junk in (b"\x00", b"\x00\x05abc", b"\xff\xff" + b"x" * 10, b"\x00\x02\x00\x00"):
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(junk)
        writer.write_eof()
        await asyncio.wait_for(reader.read(), 3)
        writer.close()
    r = await dns.asyncquery.tcp(dns.message.make_query(NAME, "A"), host, port=port, timeout=2)
    assert r.answer


async def test_dig(dns_server: DnsServer) -> None:
    assert shutil.which("dig"), "dig is required (apt-get install dnsutils; .ci/run does)"
    host, port = where(dns_server)
    for extra in ([], ["+tcp"]):
        proc = await asyncio.create_subprocess_exec(
            "dig",
            f"@{host}",
            "-p",
            str(port),
            "+short",
            *extra,
            "SRV",
            "_http._tcp.db.demo.svc.clusterset.local",
            stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await asyncio.wait_for(proc.communicate(), 10)
        assert "0 1 9000 10-1-0-1.east.db.demo.svc.clusterset.local." in out.decode().split("\n")
    proc = await asyncio.create_subprocess_exec(
        "dig",
        f"@{host}",
        "-p",
        str(port),
        "nope.demo.svc.clusterset.local",
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 10)
    assert "status: NXDOMAIN" in out.decode() and "flags: qr aa rd" in out.decode()
