"""Helpers shared by the gateway tests: real ClientHellos and TLS record surgery."""

from __future__ import annotations

import contextlib
import ssl


def real_client_hello(sni: str | None, alpn: list[str] | None = None) -> bytes:
    """The first flight Python's ssl module sends for this SNI/ALPN (real bytes)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if alpn:
        ctx.set_alpn_protocols(alpn)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname=sni)
    with contextlib.suppress(ssl.SSLWantReadError):
        obj.do_handshake()
    return outgoing.read()


def handshake_payload(records: bytes) -> bytes:
    """Concatenate the payloads of the TLS records in ``records``."""
    out = bytearray()
    pos = 0
    while pos < len(records):
        length = int.from_bytes(records[pos + 3 : pos + 5], "big")
        out += records[pos + 5 : pos + 5 + length]
        pos += 5 + length
    return bytes(out)


def reframe(payload: bytes, cuts: list[int]) -> bytes:
    """Split a handshake payload into several handshake records at ``cuts``."""
    points = sorted({c for c in cuts if 0 < c < len(payload)})
    out = bytearray()
    start = 0
    for end in [*points, len(payload)]:
        chunk = payload[start:end]
        out += bytes([22, 3, 1]) + len(chunk).to_bytes(2, "big") + chunk
        start = end
    return bytes(out)


def record(payload: bytes, content_type: int = 22, version: bytes = b"\x03\x01") -> bytes:
    return bytes([content_type]) + version + len(payload).to_bytes(2, "big") + payload


def handshake(body: bytes, msg_type: int = 1) -> bytes:
    return bytes([msg_type]) + len(body).to_bytes(3, "big") + body


def vec(data: bytes, size: int) -> bytes:
    return len(data).to_bytes(size, "big") + data


def client_hello_body(
    extensions: bytes | None = b"",
    *,
    session_id: bytes = b"",
    suites: bytes = b"\x13\x01",
    compression: bytes = b"\x00",
) -> bytes:
    body = b"\x03\x03" + bytes(32) + vec(session_id, 1) + vec(suites, 2) + vec(compression, 1)
    if extensions is not None:
        body += vec(extensions, 2)
    return body


def ext(ext_type: int, data: bytes) -> bytes:
    return ext_type.to_bytes(2, "big") + vec(data, 2)


def sni_ext(*names: bytes, name_type: int = 0) -> bytes:
    entries = b"".join(bytes([name_type]) + vec(n, 2) for n in names)
    return ext(0, vec(entries, 2))


def alpn_ext(*protos: bytes) -> bytes:
    return ext(16, vec(b"".join(vec(p, 1) for p in protos), 2))
