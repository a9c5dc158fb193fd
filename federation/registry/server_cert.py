"""The registry's own TLS server certificate: an X.509-SVID that also names hosts.

Why this module exists: gRPC and HTTPS clients check the server's host name
against DNS/IP subjectAltNames, so the registry's certificate must carry them
next to its SPIFFE ID (`spiffe://<root td>/meshfed/registry`). The registry
generates the key itself (there is no CSR from anyone), then uses trust_bundle's
build, sign and validate steps like any other SVID.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography.hazmat.primitives import serialization

from trust_bundle import CertificateAuthority, KeyHolder, SpiffeId, generate_key
from trust_bundle.ca import sign_certificate
from trust_bundle.svid import CsrClaim, build_svid_certificate, validate_issued

# Server certificates are renewed by restarting or re-asking; a week is the
# lifetime cert-manager's docs use as a short-lived serving certificate example,
# short enough that a leaked key ages out, long enough to survive a weekend.
SERVER_LIFETIME = timedelta(days=7)


@dataclass(frozen=True, slots=True)
class ServerCredentials:
    """A server certificate chain (leaf first), its key, and the roots that verify it."""

    chain_pem: bytes
    key: KeyHolder
    roots_pem: bytes

    def __repr__(self) -> str:
        return "ServerCredentials(<chain>, key=<redacted>)"

    def key_pem(self) -> bytes:
        return self.key.unencrypted_pkcs8_pem()


def issue_server_svid(
    issuer: CertificateAuthority,
    spiffe_id: SpiffeId,
    dns_names: list[str],
    ip_addresses: list[str],
    now: datetime,
    *,
    lifetime: timedelta = SERVER_LIFETIME,
) -> ServerCredentials:
    """Generate a key and a serving SVID for it, signed by `issuer`, re-validated."""
    key = generate_key()
    claim = CsrClaim(spiffe_id, key.public_key)
    builder = build_svid_certificate(
        claim, issuer, now, lifetime, dns_names=dns_names, ip_addresses=ip_addresses
    )
    cert = sign_certificate(builder, issuer.key)
    validate_issued(cert, claim, issuer, now)
    intermediates = (issuer.certificate, *issuer.chain[:-1])
    chain = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in (cert, *intermediates))
    roots = issuer.root.public_bytes(serialization.Encoding.PEM)
    return ServerCredentials(chain_pem=chain, key=key, roots_pem=roots)
