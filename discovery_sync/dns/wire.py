"""Answer raw DNS packets: a fast path over a response cache, dnspython behind it.

Most queries are one question with at most an OPT record. For those the cache key
is read straight off the bytes (the question lowercased, the EDNS facts that change
the response, the RD bit), and a hit costs a dict lookup and two slices: the
query's ID and its question (with the client's letter case, which resolvers using
0x20 randomisation check) are spliced into the cached response. Everything else,
and every miss, goes through dnspython and `answer.respond`. The cache is dropped
whenever the zone changes and bounded so a flood of random names cannot grow it.
No I/O: `server` feeds it packets.
"""

from __future__ import annotations

import dns.message

from discovery_sync.dns.answer import (
    CLASSIC_UDP,
    TCP_MAX,
    UDP_PAYLOAD,
    formerr,
    render,
    respond,
    udp_limit,
)
from discovery_sync.dns.zone import ZoneData

MAX_CACHE = 20_000  # entries; a response is well under 1 KiB, so under ~20 MiB
_OPT = 41  # RFC 6891 section 6.1.1: OPT pseudo-RR type


def _fast_key(packet: bytes, tcp: bool) -> tuple[bytes, int] | None:
    """(cache key, end of the question) for a plain query, else None (slow path)."""
    n = len(packet)
    if n < 17 or packet[2] & 0xF8 or packet[4:10] != b"\x00\x01\x00\x00\x00\x00":
        return None  # a response, an opcode other than QUERY, or not one bare question
    arcount = packet[10] << 8 | packet[11]
    pos = 12
    while True:
        if pos >= n:
            return None
        length = packet[pos]
        if length == 0:
            break
        if length > 63:  # a compression pointer or reserved label type
            return None
        pos += 1 + length
    end = pos + 5  # root label, QTYPE, QCLASS
    if end > n or end - 12 > 255 + 4:
        return None
    limit = TCP_MAX
    edns = b"-"
    if arcount == 0:
        if end != n:
            return None
        if not tcp:
            limit = CLASSIC_UDP
    elif arcount == 1:
        # OPT: root name, TYPE, CLASS = payload, TTL = ext-rcode/version/flags, RDLEN.
        if n < end + 11 or packet[end] != 0 or packet[end + 1 : end + 3] != b"\x00\x29":
            return None
        if packet[end + 6] != 0:  # EDNS version above 0: BADVERS on the slow path
            return None
        rdlen = packet[end + 9] << 8 | packet[end + 10]
        if end + 11 + rdlen != n:
            return None
        if not tcp:
            payload = packet[end + 3] << 8 | packet[end + 4]
            limit = max(CLASSIC_UDP, min(payload, UDP_PAYLOAD))
        edns = bytes([packet[end + 7] & 0x80])  # the DO bit is echoed (RFC 3225)
    else:
        return None
    key = packet[12:end].lower() + edns + limit.to_bytes(2, "big") + bytes([packet[2] & 0x01])
    return key, end


class _State:
    """One zone with its caches, swapped as a whole so a reader in another thread
    never pairs a new zone with an old cache."""

    __slots__ = ("cache", "exact", "zone")

    def __init__(self, zone: ZoneData) -> None:
        self.zone = zone
        self.cache: dict[bytes, bytes] = {}
        # Exact repeats (same bytes after the ID, e.g. a resolver asking again):
        # one slice and one lookup. One dict per transport: their limits differ.
        self.exact: tuple[dict[bytes, bytes], dict[bytes, bytes]] = ({}, {})


class Responder:
    """Turns query packets into response packets for the current zone."""

    def __init__(self, zone: ZoneData) -> None:
        self._state = _State(zone)
        self.hits = 0
        self.misses = 0

    @property
    def zone(self) -> ZoneData:
        return self._state.zone

    def update(self, zone: ZoneData) -> None:
        self._state = _State(zone)

    def handle(self, packet: bytes, *, tcp: bool = False) -> bytes | None:
        """The response bytes, or None to send nothing. Never raises on bad input."""
        state = self._state
        exact = state.exact[tcp]
        tail = exact.get(packet[2:])
        if tail is not None:
            self.hits += 1
            return packet[:2] + tail
        fast = _fast_key(packet, tcp)
        if fast is not None:
            key, end = fast
            cached = state.cache.get(key)
            if cached is not None:
                self.hits += 1
                spliced = packet[:2] + cached[2:12] + packet[12:end] + cached[end:]
                _remember(exact, packet[2:], spliced[2:])
                return spliced
        self.misses += 1
        out = self._slow(state.zone, packet, tcp)
        if fast is not None and out is not None and len(out) >= fast[1] and out[4:6] == b"\x00\x01":
            _remember(state.cache, fast[0], out)
            _remember(exact, packet[2:], out[2:])
        return out

    @staticmethod
    def _slow(zone: ZoneData, packet: bytes, tcp: bool) -> bytes | None:
        try:
            query = dns.message.from_wire(packet, ignore_trailing=False)
        except Exception:  # dnspython raises many types on garbage: all mean FORMERR
            return formerr(packet)
        try:
            response = respond(query, zone)
            if response is None:
                return None
            limit = TCP_MAX if tcp else udp_limit(query)
            return render(response, limit)
        except Exception:  # a bug must cost one answer, never the server
            return formerr(packet)


def _remember(cache: dict[bytes, bytes], key: bytes, value: bytes) -> None:
    if len(cache) >= MAX_CACHE:
        cache.clear()  # crude but bounded: a flood of random names cannot grow it
    cache[key] = value
