"""TLS over a raw non-blocking socket, driven by asyncio (ssl.MemoryBIO).

Why it exists: terminate mode must start the TLS handshake with bytes that were
already read from the socket (the ClientHello the router peeked at). asyncio's
own TLS transports cannot be handed bytes already consumed, so the gateway keeps
the socket raw and runs an :class:`ssl.SSLObject` over memory BIOs itself. The
same class serves egress origination (client side) and health probes.

All ``ssl`` and ``OSError`` failures are translated to
:class:`~eastwest_gateway.errors.HandshakeError` (during the handshake) or
surface as EOF (afterwards: a reset peer is simply gone).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from typing import Final

from eastwest_gateway.errors import HandshakeError

READ_SIZE: Final = 256 * 1024
# One TLS record carries at most 2^14 bytes of plaintext (RFC 8446 section 5.1);
# reading several records' worth per call amortises the Python overhead.


class TlsStream:
    """One TLS session over ``sock`` (which must be non-blocking)."""

    def __init__(
        self,
        sock: socket.socket,
        context: ssl.SSLContext,
        *,
        server_side: bool,
        server_hostname: str | None = None,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self.sock = sock
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._obj = context.wrap_bio(
            self._incoming,
            self._outgoing,
            server_side=server_side,
            server_hostname=server_hostname,
        )
        self._eof = False

    async def handshake(self, initial: bytes = b"") -> None:
        """Complete the handshake, feeding ``initial`` (already-read bytes) first."""
        if initial:
            self._incoming.write(initial)
        while True:
            try:
                self._obj.do_handshake()
            except ssl.SSLWantReadError:
                need_more = True
            except ssl.SSLCertVerificationError as exc:
                await self._flush_quietly()
                raise HandshakeError(
                    f"certificate verification failed: {exc.verify_message}",
                    reason="cert_verify_failed",
                ) from exc
            except ssl.SSLError as exc:
                await self._flush_quietly()  # deliver the alert OpenSSL queued
                raise HandshakeError(
                    f"TLS handshake failed: {exc.reason or exc}",
                    reason=_reason(exc),
                ) from exc
            else:
                need_more = False
            await self._flush_handshake()
            if not need_more:
                return
            data = await self._recv_raw_handshake()
            if not data:
                raise HandshakeError("peer closed during the TLS handshake", reason="eof")
            self._incoming.write(data)

    def peer_certificate_der(self) -> bytes | None:
        return self._obj.getpeercert(binary_form=True)

    async def recv(self) -> bytes:
        """Plaintext from the peer; ``b""`` at EOF (close_notify, FIN or reset)."""
        while True:
            try:
                return self._obj.read(READ_SIZE)
            except ssl.SSLWantReadError:
                if self._eof:
                    return b""
                await self._flush_quietly()  # e.g. a KeyUpdate response
                try:
                    data = await self._loop.sock_recv(self.sock, READ_SIZE)
                except OSError:
                    data = b""
                if not data:
                    self._eof = True
                    return b""
                self._incoming.write(data)
            except ssl.SSLZeroReturnError:
                return b""
            except ssl.SSLError:
                return b""

    async def send(self, data: bytes) -> None:
        """Encrypt and send ``data``; OSError means the peer is gone."""
        self._obj.write(data)
        await self._loop.sock_sendall(self.sock, self._outgoing.read())

    async def close_notify(self) -> None:
        """Send close_notify (TLS half-close, RFC 8446 section 6.1); errors ignored."""
        with contextlib.suppress(ssl.SSLError, ValueError):
            self._obj.unwrap()
        await self._flush_quietly()

    async def _recv_raw_handshake(self) -> bytes:
        try:
            return await self._loop.sock_recv(self.sock, READ_SIZE)
        except OSError as exc:
            raise HandshakeError(f"socket error during handshake: {exc}", reason="eof") from exc

    async def _flush_handshake(self) -> None:
        pending = self._outgoing.read()
        if pending:
            try:
                await self._loop.sock_sendall(self.sock, pending)
            except OSError as exc:
                raise HandshakeError(f"socket error during handshake: {exc}", reason="eof") from exc

    async def _flush_quietly(self) -> None:
        pending = self._outgoing.read()
        if pending:
            with contextlib.suppress(OSError):
                await self._loop.sock_sendall(self.sock, pending)


def _reason(exc: ssl.SSLError) -> str:
    """A short, bounded metric label from OpenSSL's reason string."""
    text = (exc.reason or "ssl_error").lower()
    for marker, label in (
        ("certificate", "peer_cert_rejected"),
        ("no shared cipher", "no_shared_cipher"),
        ("version", "protocol_version"),
        ("alert", "peer_alert"),
        ("wrong_version_number", "protocol_version"),
    ):
        if marker in text:
            return label
    return "ssl_error"
