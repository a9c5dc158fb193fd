"""Peer identity: SPIFFE IDs out of X.509 certificates, and the allow-list check.

Why it exists: terminate mode authorises a peer by its SPIFFE ID, which lives in
the certificate's URI SAN (X509-SVID spec section 2). The check is pure so it can
be tested on its own; it reads DER with ``cryptography`` rather than trusting the
flattened dict ``ssl.getpeercert()`` returns.
"""

from __future__ import annotations

from typing import Final

from cryptography import x509

from eastwest_gateway.errors import HandshakeError

SPIFFE_SCHEME: Final = "spiffe://"
WILDCARD_SUFFIX: Final = "/*"


def spiffe_id_from_der(der: bytes) -> str:
    """The one SPIFFE ID of an X509-SVID; :class:`HandshakeError` if not exactly one."""
    try:
        cert = x509.load_der_x509_certificate(der)
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound as exc:
        raise HandshakeError("peer certificate has no SAN", reason="no_spiffe_id") from exc
    except ValueError as exc:
        raise HandshakeError(f"peer certificate unreadable: {exc}", reason="bad_cert") from exc
    ids = [
        u
        for u in san.get_values_for_type(x509.UniformResourceIdentifier)
        if u.startswith(SPIFFE_SCHEME)
    ]
    # X509-SVID section 2: "An X.509 SVID MUST contain exactly one URI SAN".
    if len(ids) != 1:
        raise HandshakeError(f"peer certificate has {len(ids)} SPIFFE IDs", reason="no_spiffe_id")
    return ids[0]


def is_allowed(spiffe_id: str, allow: tuple[str, ...]) -> bool:
    """Exact match, or ``spiffe://td/path/*`` matching everything below ``path/``."""
    for pattern in allow:
        if pattern.endswith(WILDCARD_SUFFIX):
            if spiffe_id.startswith(pattern[:-1]):
                return True
        elif spiffe_id == pattern:
            return True
    return False


def trust_domain(spiffe_id: str) -> str:
    """``east.meshfed`` for ``spiffe://east.meshfed/...`` (metric label for the peer)."""
    return spiffe_id[len(SPIFFE_SCHEME) :].partition("/")[0]
