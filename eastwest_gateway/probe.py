"""The real probe behind :mod:`eastwest_gateway.health`: can we reach a peer gateway?

Why it exists: the ranker must stop choosing a cluster whose gateway is gone
within a second or two (DESIGN.md), before any client pays for a failed connect.
With TLS configured a probe is a full mTLS handshake against the peer's reserved
probe name (answered by the peer's ingress itself); without TLS it is a TCP
connect. Any failure is ``False`` -- probes never raise.
"""

from __future__ import annotations

import asyncio
import ssl

from eastwest_gateway.errors import GatewayError
from eastwest_gateway.ingress import PROBE_SNI
from eastwest_gateway.net import close_quietly, connect
from eastwest_gateway.routefile import HostPort
from eastwest_gateway.tlsstream import TlsStream


async def probe_gateway(addr: HostPort, context: ssl.SSLContext | None, timeout: float) -> bool:
    try:
        sock, _ = await connect(addr, timeout)
    except GatewayError:
        return False
    try:
        if context is None:
            return True
        stream = TlsStream(sock, context, server_side=False, server_hostname=PROBE_SNI)
        await asyncio.wait_for(stream.handshake(), timeout)
        await stream.close_notify()
        return True
    except (GatewayError, TimeoutError, OSError):
        return False
    finally:
        close_quietly(sock)
