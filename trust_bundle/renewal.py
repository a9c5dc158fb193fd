"""When to renew an SVID: at half its lifetime, with jitter, decided purely.

Why this module exists: thousands of gateways and agents renewing at the same
instant would stampede the registry, and renewing late risks an expired
identity. The decision is a pure function of the certificate's validity
window, the current time and a jitter value the caller supplies (derive it
from a seed with ``jitter_from_seed`` so it is stable per identity and testable).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from trust_bundle.errors import TrustError
from trust_bundle.validate import require_aware

# Issue 3: renew at half lifetime (SPIRE's agent rotates at the same point),
# leaving the second half as margin for registry outages.
RENEW_AT_FRACTION = 0.5
# Jitter spreads renewals over the tenth of the lifetime just before the half
# point, so jitter never delays renewal past half lifetime.
JITTER_FRACTION = 0.1
# 2**64: jitter_from_seed maps the first 8 bytes of a SHA-256 into [0, 1).
_JITTER_SCALE = float(2**64)


def jitter_from_seed(seed: str | bytes) -> float:
    """A deterministic jitter in [0, 1) from ``seed`` (e.g. SPIFFE ID + serial)."""
    raw = seed.encode() if isinstance(seed, str) else seed
    return int.from_bytes(hashlib.sha256(raw).digest()[:8], "big") / _JITTER_SCALE


@dataclass(frozen=True, slots=True)
class RenewalDecision:
    """``renew`` now or not; ``at`` is when renewal is (or was) due; ``reason`` says why."""

    renew: bool
    at: datetime
    reason: str


def renewal_time(not_before: datetime, not_after: datetime, jitter: float) -> datetime:
    """not_before + lifetime * (0.5 - 0.1 * jitter)."""
    if not 0.0 <= jitter < 1.0:
        raise TrustError(f"jitter must be in [0, 1), got {jitter}")
    require_aware(not_before)
    require_aware(not_after)
    if not_after <= not_before:
        raise TrustError("certificate validity window is empty")
    lifetime = not_after - not_before
    return not_before + lifetime * (RENEW_AT_FRACTION - JITTER_FRACTION * jitter)


def renewal_decision(
    not_before: datetime,
    not_after: datetime,
    now: datetime,
    jitter: float,
    *,
    issued_by_signing_root: bool = True,
) -> RenewalDecision:
    """Renew when past the jittered half-life, when expired, or (during root rotation)
    as soon as the SVID chains to a root that no longer signs new intermediates."""
    require_aware(now)
    due = renewal_time(not_before, not_after, jitter)
    if now >= not_after:
        return RenewalDecision(True, due, "expired")
    if not issued_by_signing_root:
        return RenewalDecision(True, min(due, now), "root rotation: re-issue under the new root")
    if now >= due:
        return RenewalDecision(True, due, "past half lifetime")
    return RenewalDecision(False, due, "not yet due")
