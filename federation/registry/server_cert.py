"""The registry's own TLS server certificate: an X.509-SVID that also names hosts.

Why this module exists: gRPC and HTTPS clients check the server's host name
against DNS/IP subjectAltNames, so the registry's certificate must carry them
next to its SPIFFE ID (`spiffe://<root td>/meshfed/registry`). The registry
generates the key itself (there is no CSR from anyone); the build, sign and
validate steps are trust_bundle's (`trust_bundle.tlscert`, which also makes the
etcd certificates of `meshfed install`). This module holds the registry's policy:
the lifetime.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from trust_bundle import CertificateAuthority, SpiffeId
from trust_bundle.tlscert import TlsCredentials
from trust_bundle.tlscert import issue_server_svid as issue

# Server certificates are renewed by restarting or re-asking; a week is the
# lifetime cert-manager's docs use as a short-lived serving certificate example,
# short enough that a leaked key ages out, long enough to survive a weekend.
SERVER_LIFETIME = timedelta(days=7)


def issue_server_svid(
    issuer: CertificateAuthority,
    spiffe_id: SpiffeId,
    dns_names: Sequence[str],
    ip_addresses: Sequence[str],
    now: datetime,
    *,
    lifetime: timedelta = SERVER_LIFETIME,
) -> TlsCredentials:
    """Generate a key and a serving SVID for it, signed by `issuer`, re-validated."""
    return issue(issuer, spiffe_id, dns_names, ip_addresses, now, lifetime)
