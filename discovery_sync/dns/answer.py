"""Build the response to one DNS query from the compiled zone (pure, no I/O).

Response codes follow RFC 1035 section 4.1.1 and what authoritative servers do:
NXDOMAIN for a name that does not exist in the zone, NOERROR with an empty answer
(NODATA, RFC 2308 section 2.2) for a name that exists without the asked type, both
with the zone's SOA in the authority section so resolvers can cache the negative
answer; REFUSED for names outside the zone, other classes and zone transfers;
NOTIMP for opcodes other than QUERY; FORMERR for anything but one question;
BADVERS for EDNS versions above 0 (RFC 6891 section 6.1.3).
"""

from __future__ import annotations

import dns.exception
import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from discovery_sync.dns.zone import ZoneData

UDP_PAYLOAD = 1232  # our EDNS payload size: DNS Flag Day 2020 recommendation
CLASSIC_UDP = 512  # RFC 1035 section 4.2.1: UDP messages without EDNS
TCP_MAX = 65535  # RFC 1035 section 4.2.2: two-octet length prefix

_TRANSFERS = (dns.rdatatype.AXFR, dns.rdatatype.IXFR)


def udp_limit(query: dns.message.Message) -> int:
    """The largest UDP response the client accepts (RFC 6891 section 6.2.5)."""
    if query.edns < 0:
        return CLASSIC_UDP
    return max(CLASSIC_UDP, min(query.payload, UDP_PAYLOAD))


def respond(query: dns.message.Message, zone: ZoneData) -> dns.message.Message | None:
    """The response to `query`, or None when it must not be answered (it is a response)."""
    if query.flags & dns.flags.QR:
        return None  # never answer a response: no reflection loops
    response = dns.message.make_response(query, our_payload=UDP_PAYLOAD)
    if query.edns > 0:
        response.use_edns(0, 0, UDP_PAYLOAD)
        response.set_rcode(dns.rcode.BADVERS)
        return response
    if query.opcode() != dns.opcode.QUERY:
        response.set_rcode(dns.rcode.NOTIMP)
        return response
    if len(query.question) != 1:
        response.set_rcode(dns.rcode.FORMERR)
        return response
    question = query.question[0]
    qname, qtype = question.name, question.rdtype
    if (
        question.rdclass not in (dns.rdataclass.IN, dns.rdataclass.ANY)
        or not qname.is_subdomain(zone.origin)
        or qtype in _TRANSFERS
    ):
        response.set_rcode(dns.rcode.REFUSED)
        return response
    response.flags |= dns.flags.AA
    node = zone.nodes.get(qname)
    if node is None:
        response.set_rcode(dns.rcode.NXDOMAIN)
        _negative(response, zone)
        return response
    if qtype == dns.rdatatype.ANY:
        found = list(node.values())
    else:
        one = node.get(qtype)
        found = [one] if one is not None else []
    if not found:
        _negative(response, zone)  # NODATA
        return response
    response.answer.extend(found)
    if qtype in (dns.rdatatype.SRV, dns.rdatatype.ANY):
        response.additional.extend(zone.glue.get(qname, ()))
    return response


def _negative(response: dns.message.Message, zone: ZoneData) -> None:
    if zone.soa is not None:
        response.authority.append(zone.soa)


def render(response: dns.message.Message, max_size: int) -> bytes:
    """Wire form within `max_size`; if it does not fit, an empty answer with TC set.

    RFC 2181 section 9: a truncated response tells the client to retry over TCP;
    sending a partial RRset would let it cache a wrong answer.
    """
    try:
        return response.to_wire(max_size=max_size)
    except dns.exception.TooBig:
        response.answer.clear()
        response.authority.clear()
        response.additional.clear()
        response.flags |= dns.flags.TC
        return response.to_wire(max_size=max_size)


def formerr(packet: bytes) -> bytes | None:
    """FORMERR for a packet dnspython cannot parse, or None to drop it.

    Only a packet with a whole header that is not itself a response gets an
    answer (RFC 1035 section 4.1.1: the header carries the ID to echo).
    """
    if len(packet) < 12 or packet[2] & 0x80:
        return None
    opcode_bits = packet[2] & 0x78
    flags = 0x80 | opcode_bits | (packet[2] & 0x01)  # QR, the opcode, RD copied
    return packet[:2] + bytes([flags, dns.rcode.FORMERR]) + b"\x00" * 8
