"""A sans-IO parser that extracts SNI and ALPN from a TLS ClientHello.

Why it exists: in passthrough mode the gateway must pick a backend from the
server name *without* decrypting anything, so it reads the first flight of the
connection itself. The parser does no I/O and keeps no clock: the asyncio shell
feeds it whatever bytes arrived (one byte at a time if the peer is slow or hostile)
and gets back either :data:`NEED_MORE` or a :class:`ClientHello`.

It accepts a ClientHello fragmented over any number of TLS records (RFC 8446
section 5.1 allows a handshake message to span records) and refuses, with a
subclass of :class:`~eastwest_gateway.errors.ClientHelloError` and nothing else:

* bytes that are not a TLS handshake record at all (:class:`NotTLSError`),
* framing or ClientHello structure that breaks RFC 8446 / RFC 6066 / RFC 7301
  (:class:`MalformedClientHelloError`),
* a ClientHello larger than 16 KiB, or more raw input than such a ClientHello
  could ever need (:class:`OversizedClientHelloError`).

It never needs more input than the ClientHello itself, so the shell can stop
reading as soon as :meth:`ClientHelloParser.feed` returns a result and forward
everything it read to the backend unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from eastwest_gateway.errors import (
    MalformedClientHelloError,
    NotTLSError,
    OversizedClientHelloError,
)

# RFC 8446 section 5.1: ContentType handshake(22); record header is
# type(1) + legacy_record_version(2) + length(2).
CONTENT_TYPE_HANDSHAKE: Final = 22
CONTENT_TYPE_ALERT: Final = 21
RECORD_HEADER_LEN: Final = 5
# RFC 8446 section 5.1: "The length MUST NOT exceed 2^14 bytes."
MAX_RECORD_PAYLOAD: Final = 2**14
# RFC 8446 section 4: HandshakeType client_hello(1); header msg_type(1) + uint24 length.
HANDSHAKE_TYPE_CLIENT_HELLO: Final = 1
HANDSHAKE_HEADER_LEN: Final = 4
# Gateway policy (issue 5): a ClientHello above 16 KiB is refused. Real ones are
# 200 B - 2 KiB (about 1.8 KiB with a post-quantum X25519MLKEM768 key share).
MAX_CLIENT_HELLO_LEN: Final = 16 * 1024
# Bound on raw input (record headers included) before a ClientHello completes:
# twice the message limit leaves room for fragmentation into records of >= 5 bytes
# while stopping a peer that sends endless 1-byte records.
MAX_RAW_INPUT: Final = 2 * MAX_CLIENT_HELLO_LEN
# RFC 8446 section 4.1.2: Random is 32 bytes; legacy_session_id is <0..32>;
# cipher_suites <2..2^16-2> of 2-byte values; legacy_compression_methods <1..2^8-1>.
RANDOM_LEN: Final = 32
MAX_SESSION_ID_LEN: Final = 32
# RFC 6066 section 3: ExtensionType server_name(0), NameType host_name(0).
EXT_SERVER_NAME: Final = 0
NAME_TYPE_HOST_NAME: Final = 0
# RFC 7301 section 3.1: ExtensionType application_layer_protocol_negotiation(16).
EXT_ALPN: Final = 16
# RFC 1035 section 2.3.4 / RFC 6066 section 3: a DNS name is at most 253 characters
# in text form (255 octets on the wire).
MAX_HOST_NAME_LEN: Final = 253


@dataclass(frozen=True, slots=True)
class ClientHello:
    """What the gateway needs from a ClientHello."""

    sni: str | None
    """Lower-cased host_name from the server_name extension, None if absent."""
    alpn: tuple[str, ...]
    """ALPN protocol names in client preference order (latin-1 decoded, lossless)."""
    legacy_version: int
    """ClientHello.legacy_version (0x0303 for TLS 1.2 and 1.3)."""


@dataclass(frozen=True, slots=True)
class NeedMore:
    """The parser needs more bytes; nothing is wrong yet."""


NEED_MORE: Final = NeedMore()


class ClientHelloParser:
    """Incremental state machine: feed bytes until a :class:`ClientHello` comes out.

    After a result (or an error) the parser is finished: further calls return the
    same result (or raise the same error) without buffering more input.
    """

    def __init__(self) -> None:
        self._raw = bytearray()  # every byte fed, for the shell to forward
        self._pos = 0  # start of the first record not yet consumed in _raw
        self._message = bytearray()  # handshake bytes reassembled from records
        self._expected: int | None = None  # full handshake message length once known
        self._result: ClientHello | None = None
        self._error: Exception | None = None

    @property
    def raw(self) -> bytes:
        """Every byte fed so far (what passthrough must forward first)."""
        return bytes(self._raw)

    def feed(self, data: bytes) -> ClientHello | NeedMore:
        """Add bytes; return the ClientHello once complete, else :data:`NEED_MORE`.

        Raises only subclasses of :class:`~eastwest_gateway.errors.ClientHelloError`.
        """
        if self._result is not None:
            return self._result
        if self._error is not None:
            raise self._error
        self._raw += data
        try:
            return self._advance()
        except (NotTLSError, MalformedClientHelloError, OversizedClientHelloError) as exc:
            self._error = exc
            raise

    def _advance(self) -> ClientHello | NeedMore:
        self._check_record_start()
        while True:
            available = len(self._raw) - self._pos
            if available < RECORD_HEADER_LEN:
                break
            header = self._raw[self._pos : self._pos + RECORD_HEADER_LEN]
            self._check_record_header(header)
            length = int.from_bytes(header[3:5], "big")
            if available < RECORD_HEADER_LEN + length:
                break
            start = self._pos + RECORD_HEADER_LEN
            self._message += self._raw[start : start + length]
            self._pos = start + length
            result = self._check_message()
            if result is not None:
                self._result = result
                return result
        if len(self._raw) > MAX_RAW_INPUT:
            raise OversizedClientHelloError(
                f"more than {MAX_RAW_INPUT} bytes of input without a complete ClientHello"
            )
        return NEED_MORE

    def _check_record_start(self) -> None:
        """Reject non-TLS as early as the first byte allows."""
        head = self._raw[self._pos : self._pos + 3]
        if len(head) >= 1 and head[0] != CONTENT_TYPE_HANDSHAKE:
            if self._pos == 0:
                raise NotTLSError(f"first byte 0x{head[0]:02x} is not a TLS handshake record")
            raise MalformedClientHelloError(
                f"record type {head[0]} interleaved with the ClientHello (RFC 8446 section 5.1)"
            )
        # legacy_record_version: major version 3 (SSL 3.0 .. TLS 1.3 framing).
        if len(head) >= 2 and head[1] != 3:
            if self._pos == 0:
                raise NotTLSError(f"record version major {head[1]} is not 3")
            raise MalformedClientHelloError(f"record version major {head[1]} is not 3")

    def _check_record_header(self, header: bytearray) -> None:
        if header[0] != CONTENT_TYPE_HANDSHAKE or header[1] != 3:
            raise MalformedClientHelloError("record is not a TLS handshake record")
        length = int.from_bytes(header[3:5], "big")
        if length == 0:
            raise MalformedClientHelloError(
                "zero-length handshake record (forbidden by RFC 8446 section 5.1)"
            )
        if length > MAX_RECORD_PAYLOAD:
            raise MalformedClientHelloError(
                f"record length {length} exceeds 2^14 (RFC 8446 section 5.1)"
            )

    def _check_message(self) -> ClientHello | None:
        if self._expected is None:
            if len(self._message) < HANDSHAKE_HEADER_LEN:
                return None
            if self._message[0] != HANDSHAKE_TYPE_CLIENT_HELLO:
                raise MalformedClientHelloError(
                    f"first handshake message has type {self._message[0]}, not client_hello(1)"
                )
            body_len = int.from_bytes(self._message[1:4], "big")
            if body_len + HANDSHAKE_HEADER_LEN > MAX_CLIENT_HELLO_LEN:
                raise OversizedClientHelloError(
                    f"ClientHello of {body_len + HANDSHAKE_HEADER_LEN} bytes exceeds "
                    f"{MAX_CLIENT_HELLO_LEN}"
                )
            self._expected = body_len + HANDSHAKE_HEADER_LEN
        if len(self._message) < self._expected:
            return None
        body = bytes(self._message[HANDSHAKE_HEADER_LEN : self._expected])
        return parse_client_hello_body(body)


def parse_client_hello(data: bytes) -> ClientHello | NeedMore:
    """One-shot convenience wrapper around :class:`ClientHelloParser`."""
    return ClientHelloParser().feed(data)


class _Reader:
    """Bounds-checked big-endian reader; every overrun is a MalformedClientHelloError."""

    __slots__ = ("_data", "_pos", "_what")

    def __init__(self, data: bytes, what: str) -> None:
        self._data = data
        self._pos = 0
        self._what = what

    @property
    def remaining(self) -> int:
        return len(self._data) - self._pos

    def take(self, n: int, field: str) -> bytes:
        if n > self.remaining:
            raise MalformedClientHelloError(
                f"{self._what}: {field} needs {n} bytes, {self.remaining} left"
            )
        chunk = self._data[self._pos : self._pos + n]
        self._pos += n
        return chunk

    def uint(self, size: int, field: str) -> int:
        return int.from_bytes(self.take(size, field), "big")

    def vector(self, len_size: int, field: str) -> _Reader:
        length = self.uint(len_size, f"{field} length")
        return _Reader(self.take(length, field), f"{self._what}.{field}")

    def take_all(self) -> bytes:
        return self.take(self.remaining, "rest")

    def expect_end(self) -> None:
        if self.remaining:
            raise MalformedClientHelloError(f"{self._what}: {self.remaining} trailing bytes")


def parse_client_hello_body(body: bytes) -> ClientHello:
    """Parse a ClientHello body (RFC 8446 section 4.1.2) without its handshake header."""
    r = _Reader(body, "ClientHello")
    legacy_version = r.uint(2, "legacy_version")
    r.take(RANDOM_LEN, "random")
    session_id = r.vector(1, "legacy_session_id")
    if session_id.remaining > MAX_SESSION_ID_LEN:
        raise MalformedClientHelloError("legacy_session_id longer than 32 bytes")
    suites = r.vector(2, "cipher_suites")
    if suites.remaining < 2 or suites.remaining % 2:
        raise MalformedClientHelloError("cipher_suites must hold one or more 2-byte values")
    if r.vector(1, "legacy_compression_methods").remaining < 1:
        raise MalformedClientHelloError("legacy_compression_methods is empty")
    if r.remaining == 0:
        # A TLS 1.2 ClientHello may omit extensions entirely (RFC 5246 section 7.4.1.2).
        return ClientHello(sni=None, alpn=(), legacy_version=legacy_version)
    extensions = r.vector(2, "extensions")
    r.expect_end()
    sni: str | None = None
    alpn: tuple[str, ...] = ()
    seen: set[int] = set()
    while extensions.remaining:
        ext_type = extensions.uint(2, "extension_type")
        ext_data = extensions.vector(2, f"extension {ext_type}")
        if ext_type in seen:
            # RFC 8446 section 4.2: at most one extension of each type.
            raise MalformedClientHelloError(f"duplicate extension {ext_type}")
        seen.add(ext_type)
        if ext_type == EXT_SERVER_NAME:
            sni = _parse_server_name(ext_data)
        elif ext_type == EXT_ALPN:
            alpn = _parse_alpn(ext_data)
    return ClientHello(sni=sni, alpn=alpn, legacy_version=legacy_version)


def _parse_server_name(ext: _Reader) -> str | None:
    """RFC 6066 section 3: ServerNameList with at most one host_name."""
    names = ext.vector(2, "server_name_list")
    ext.expect_end()
    if names.remaining == 0:
        raise MalformedClientHelloError("empty server_name_list")
    host: str | None = None
    while names.remaining:
        name_type = names.uint(1, "name_type")
        name = names.vector(2, "host_name").take_all()
        if name_type != NAME_TYPE_HOST_NAME:
            continue  # unknown name types are ignored (RFC 6066 section 3)
        if host is not None:
            raise MalformedClientHelloError("more than one host_name in server_name")
        host = _decode_host_name(name)
    return host


def _decode_host_name(name: bytes) -> str:
    if not name or len(name) > MAX_HOST_NAME_LEN:
        raise MalformedClientHelloError(f"host_name length {len(name)} outside 1..253")
    # RFC 6066 section 3: HostName is ASCII (A-labels for IDNs), without a trailing dot.
    if not all(0x21 <= b < 0x7F for b in name):
        raise MalformedClientHelloError("host_name is not printable ASCII")
    text = name.decode("ascii").lower()
    if text.endswith(".") or ".." in text or text.startswith("."):
        raise MalformedClientHelloError(f"host_name {text!r} has an empty label")
    return text


def _parse_alpn(ext: _Reader) -> tuple[str, ...]:
    """RFC 7301 section 3.1: ProtocolNameList <2..2^16-1> of ProtocolName <1..2^8-1>."""
    names = ext.vector(2, "protocol_name_list")
    ext.expect_end()
    if names.remaining == 0:
        raise MalformedClientHelloError("empty ALPN protocol_name_list")
    protocols: list[str] = []
    while names.remaining:
        proto = names.vector(1, "protocol_name").take_all()
        if not proto:
            raise MalformedClientHelloError("empty ALPN protocol name")
        protocols.append(proto.decode("latin-1"))
    return tuple(protocols)


# RFC 8446 section 6: AlertLevel fatal(2); AlertDescription values from section 6.2
# (decode_error 50, handshake_failure 40) and RFC 6066 section 3 (unrecognized_name 112).
ALERT_LEVEL_FATAL: Final = 2
ALERT_HANDSHAKE_FAILURE: Final = 40
ALERT_DECODE_ERROR: Final = 50
ALERT_UNRECOGNIZED_NAME: Final = 112


def plaintext_alert(description: int) -> bytes:
    """A fatal alert record in the clear, valid before any key is established."""
    # Record version 0x0303 (RFC 8446 section 5.1 legacy_record_version for TLS 1.2+).
    return bytes([CONTENT_TYPE_ALERT, 3, 3, 0, 2, ALERT_LEVEL_FATAL, description])
