"""Pure bundle merging and update acceptance.

Why this module exists: bundles change during rotation and arrive from other
clusters; two rules keep that safe and are easiest to trust as small pure
functions: a merge may add and remove authorities but never leave none (an
empty bundle would make every peer untrusted, i.e. an outage), and a consumer
accepts a received bundle only if it is newer (``spiffe_sequence``, Trust
Domain and Bundle §4.1.1 "monotonically increasing") and for the same trust
domain, which rejects rollbacks and replays of old bundles.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

from cryptography import x509

from trust_bundle.errors import InvalidBundle
from trust_bundle.spiffe_bundle import SpiffeBundle, certificate_fingerprint

_T = TypeVar("_T")


def _dedupe(items: Iterable[_T]) -> tuple[_T, ...]:
    return tuple(dict.fromkeys(items))


def merge_bundles(
    base: SpiffeBundle, update: SpiffeBundle, *, remove: Iterable[str] = ()
) -> SpiffeBundle:
    """Union of ``base`` and ``update`` authorities minus the SHA-256 fingerprints in
    ``remove``. Refuses a different trust domain and an empty result. The sequence is
    the larger of the two, plus one when the merged contents differ from that bundle's."""
    if base.trust_domain != update.trust_domain:
        raise InvalidBundle(
            f"cannot merge bundles of {base.trust_domain} and {update.trust_domain}"
        )
    pruned = frozenset(remove)
    authorities: tuple[x509.Certificate, ...] = tuple(
        c
        for c in _dedupe((*base.x509_authorities, *update.x509_authorities))
        if certificate_fingerprint(c) not in pruned
    )
    if not authorities:
        raise InvalidBundle("refusing to prune the bundle to empty")
    newest = update if (update.sequence or 0) >= (base.sequence or 0) else base
    sequence = newest.sequence or 0
    others = _dedupe((*base.other_keys, *update.other_keys))
    if set(authorities) != set(newest.x509_authorities) or set(others) != set(newest.other_keys):
        sequence += 1
    hints = [h for h in (base.refresh_hint, update.refresh_hint) if h is not None]
    return SpiffeBundle(
        trust_domain=base.trust_domain,
        x509_authorities=authorities,
        sequence=sequence,
        refresh_hint=min(hints) if hints else None,
        other_keys=others,
    )


def accept_update(held: SpiffeBundle | None, received: SpiffeBundle) -> SpiffeBundle:
    """The bundle a consumer should hold after receiving ``received``.

    Refuses: another trust domain, no X.509 authority, a missing or lower sequence
    than held (rollback), and the same sequence with different contents (tampering
    or a publisher bug). An identical re-delivery returns ``held`` unchanged."""
    if not received.x509_authorities:
        raise InvalidBundle("received bundle has no X.509 authority")
    if held is None:
        return received
    if received.trust_domain != held.trust_domain:
        raise InvalidBundle(f"bundle for {received.trust_domain} offered for {held.trust_domain}")
    if held.sequence is not None:
        if received.sequence is None:
            raise InvalidBundle("received bundle has no spiffe_sequence; held one has")
        if received.sequence < held.sequence:
            raise InvalidBundle(
                f"rollback refused: sequence {received.sequence} < held {held.sequence}"
            )
        if received.sequence == held.sequence:
            if received != held:
                raise InvalidBundle(f"sequence {received.sequence} reused with different contents")
            return held
    return received
