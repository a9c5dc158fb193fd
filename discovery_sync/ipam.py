"""Cluster-set IP allocation for ClusterSetIP imports (pure).

MCS leaves the cluster-set IP to the implementation (KEP-1645: "a ClusterSetIP is
allocated by the MCS controller in each importing cluster"). meshfed hashes the
service's name into a CIDR, so every agent of one cluster, and every restart,
gives a service the same address, and keeps addresses it already gave out; a
collision moves the newcomer to the next free address (linear probing).
The default range is RFC 2544's benchmarking block 198.18.0.0/15: reserved,
never routed on the internet, unlikely to collide with pod or service ranges.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable, Mapping

from discovery_sync.errors import SourceError
from federation.model import ServiceKey

DEFAULT_CIDR = "198.18.0.0/15"


def parse_cidr(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        net = ipaddress.ip_network(text, strict=True)
    except ValueError as err:
        raise SourceError("--clusterset-cidr", f"{text!r} is not a CIDR: {err}") from err
    if net.num_addresses < 4:
        raise SourceError("--clusterset-cidr", f"{text} is too small")
    return net


def allocate(
    services: Iterable[ServiceKey],
    cidr: ipaddress.IPv4Network | ipaddress.IPv6Network,
    previous: Mapping[ServiceKey, str] | None = None,
) -> dict[ServiceKey, str]:
    """One address per service, stable across calls given `previous`."""
    keys = sorted(set(services), key=str)
    size = cidr.num_addresses - 2  # no network or broadcast address
    if len(keys) > size:
        raise SourceError(
            "--clusterset-cidr", f"{cidr} has room for {size} services, not {len(keys)}"
        )
    out: dict[ServiceKey, str] = {}
    taken: set[int] = set()
    base = int(cidr.network_address)
    for key in keys:
        held = (previous or {}).get(key)
        if held is not None and ipaddress.ip_address(held) in cidr:
            offset = int(ipaddress.ip_address(held)) - base
            if offset not in taken and 0 < offset <= size:
                out[key] = held
                taken.add(offset)
    for key in keys:
        if key in out:
            continue
        digest = int.from_bytes(hashlib.sha256(str(key).encode()).digest()[:8], "big")
        offset = digest % size + 1
        while offset in taken:
            offset = offset % size + 1
        taken.add(offset)
        out[key] = str(ipaddress.ip_address(base + offset))
    return out
