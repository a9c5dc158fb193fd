"""Does a cluster's intermediate chain to a root of the served bundle, and for how long?

Pure: certificates in, a verdict out, time as a parameter. The CLI fetches the
bundle (`/api/v1/trust/roots.pem`, public) and the intermediate (the `ca-cert.pem`
of the cluster's CA export) and asks here.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cryptography import x509

from trust_bundle import TrustError
from trust_bundle.validate import check_signed_by, check_validity, describe

EXPIRY_WARNING = timedelta(days=30)


@dataclass(frozen=True)
class Verdict:
    ok: bool
    detail: str
    expires: datetime | None = None


def load_pems(text: str) -> list[x509.Certificate]:
    if not text.strip():
        return []
    return x509.load_pem_x509_certificates(text.encode())


def bundle_roots(doc: Mapping[str, Any]) -> list[x509.Certificate]:
    """The X.509 authorities of a SPIFFE bundle document (first `x5c` of x509-svid keys)."""
    out = []
    for key in doc.get("keys", []):
        if isinstance(key, Mapping) and key.get("use") == "x509-svid" and key.get("x5c"):
            out.append(x509.load_der_x509_certificate(base64.b64decode(key["x5c"][0])))
    return out


def verify_intermediate(
    intermediate_pem: str,
    roots: str | Sequence[x509.Certificate],
    now: datetime,
    *,
    within: timedelta = EXPIRY_WARNING,
) -> Verdict:
    """`roots` as PEM text or certificates: the bundle the peer holds."""
    try:
        certs = load_pems(intermediate_pem)
        if isinstance(roots, str):
            roots = load_pems(roots)
    except ValueError as exc:
        return Verdict(False, f"unreadable certificate: {exc}")
    if not certs:
        return Verdict(False, "no intermediate certificate")
    if not roots:
        return Verdict(False, "the served bundle holds no root")
    cert = certs[0]
    expires = cert.not_valid_after_utc
    issuer = next((r for r in roots if r.subject == cert.issuer), None)
    if issuer is None:
        return Verdict(
            False, f"issuer {cert.issuer.rfc4514_string()} is not in the bundle", expires
        )
    try:
        check_signed_by(cert, issuer)
        check_validity(cert, now)
        check_validity(issuer, now)
    except TrustError as exc:
        return Verdict(False, str(exc), expires)
    left = expires - now
    if left < within:
        return Verdict(False, f"expires in {_days(left)} ({expires:%Y-%m-%d})", expires)
    root_left = issuer.not_valid_after_utc - now
    if root_left < within:
        return Verdict(
            False,
            f"its root {describe(issuer)} expires in {_days(root_left)}",
            expires,
        )
    return Verdict(True, f"expires in {_days(left)}", expires)


def _days(delta: timedelta) -> str:
    days = delta.days
    if days >= 1:
        return f"{days} day{'s' if days != 1 else ''}"
    hours = int(delta.total_seconds() // 3600)
    return f"{max(hours, 0)} hours"
