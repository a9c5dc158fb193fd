"""Tunables of a gateway process, with where each default comes from.

Why it exists: limits and timeouts are policy shared by the ingress, the egress
and the process shell; tests shrink them (a slowloris test cannot wait 5 s), so
they are one frozen value passed down rather than module constants.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

RelayImpl = Literal["auto", "splice", "asyncio"]


@dataclass(frozen=True, slots=True)
class GatewaySettings:
    client_hello_timeout: float = 5.0
    """Issue 5: the ClientHello must arrive within 5 s (slowloris defence)."""
    handshake_timeout: float = 10.0
    """Terminate mode / egress origination: Envoy's transport_socket_connect_timeout is 10 s."""
    connect_timeout: float = 5.0
    """Ingress backend TCP connect; Envoy's default cluster connect_timeout is 5 s."""
    peer_connect_timeout: float = 1.5
    """Egress TCP connect to a peer gateway, and its probe. Linux sends a SYN again after
    its initial RTO of 1 s (RFC 6298 section 2.1; TCP_TIMEOUT_INIT): a peer that has not
    answered by 1.5 s lost the first SYN and has had 0.5 s -- more than a cross-region
    RTT (< 300 ms) -- to answer the second. Then the next cluster is tried: a
    blackholed peer (a partition) costs a new connection 1.5 s, not Envoy's 5 s."""
    peer_handshake_timeout: float = 3.0
    """Egress origination: the TLS handshake with a peer gateway, after its connect. TLS
    1.3 needs one round trip (< 300 ms cross-region) plus signature work (ms); 3 s
    leaves room for a lost flight resent after the initial 1 s RTO (RFC 6298 section
    2.1). A handshake caught in a partition then moves to the next cluster while the
    client still waits (the client's bytes are not read yet), instead of holding it
    for the 10 s ``handshake_timeout`` that clients' own timeouts may not outlast."""
    idle_timeout: float = 3600.0
    """Envoy tcp_proxy's default idle_timeout is 1 h."""
    max_connections: int = 10_000
    """Active connections per direction; beyond it new ones are closed at once."""
    max_connections_per_peer: int = 1_000
    """Active ingress connections per source address."""
    drain_deadline: float = 30.0
    """SIGTERM drain; Kubernetes' default terminationGracePeriodSeconds is 30 s."""
    reload_poll_interval: float = 2.0
    """Route-file mtime poll; SIGHUP reloads at once."""
    relay: RelayImpl = "auto"
    """Byte mover for plaintext-to-plaintext relays: os.splice threads where available."""
    max_connect_attempts: int = 3
    """Egress: clusters tried for one connection before giving up."""
    eject_after_failures: int = 3
    """Consecutive connect failures that eject an upstream cluster."""
    ejection_base: float = 30.0
    """First ejection; doubles per repeat (Envoy outlier base_ejection_time: 30 s)."""
    ejection_max: float = 300.0
    """Ejection cap (Envoy outlier max_ejection_time: 300 s)."""
    probe_interval: float = 2.0
    """Issue 5: peer gateways are probed every 2 s by default."""
