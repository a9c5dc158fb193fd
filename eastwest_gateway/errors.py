"""The one exception tree of the gateway.

Every error the gateway raises on purpose is a :class:`GatewayError`. Errors from
the standard library or third-party code (``OSError``, ``ssl.SSLError``,
``yaml.YAMLError`` ...) are translated at the boundary where they occur with
``raise ... from``, so callers -- the CLI, the connection handlers, tests -- need
to catch exactly one root. Each connection-level error carries a short ``reason``
that becomes a metric label, so the set of reasons is small and fixed.
"""

from __future__ import annotations


class GatewayError(Exception):
    """Root of every error the east-west gateway raises."""

    reason: str = "error"


# --- ClientHello parsing (ingress, before any routing decision) -------------------


class ClientHelloError(GatewayError):
    """The first bytes of a connection are not an acceptable TLS ClientHello."""

    reason = "bad_client_hello"


class NotTLSError(ClientHelloError):
    """The peer does not speak TLS at all (e.g. plain HTTP on 15443)."""

    reason = "not_tls"


class MalformedClientHelloError(ClientHelloError):
    """TLS framing was recognised but the ClientHello violates RFC 8446 / 6066 / 7301."""

    reason = "malformed"


class OversizedClientHelloError(ClientHelloError):
    """The ClientHello exceeds the gateway's size limit (16 KiB)."""

    reason = "oversized"


# --- Naming, routing and configuration ----------------------------------------------


class SniFormatError(GatewayError):
    """A server name follows neither Istio's nor meshfed's SNI format."""

    reason = "bad_sni"


class ConfigError(GatewayError):
    """The route file or the command line is invalid; the message names the field."""

    reason = "bad_config"


# --- Connection handling -------------------------------------------------------------


class ConnectionRejected(GatewayError):
    """A connection was refused by policy (unknown SNI, unauthorised peer, limits)."""

    reason = "rejected"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason


class UpstreamError(GatewayError):
    """Connecting to a backend or an upstream gateway failed."""

    reason = "upstream_connect_failed"


class HandshakeError(GatewayError):
    """A TLS handshake (terminate mode, egress origination, probe) failed."""

    reason = "handshake_failed"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason
