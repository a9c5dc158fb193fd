"""Following a root rotation from the Watch: which roots to trust, when to renew.

Why this module exists: during a staged root rotation (docs/trust.md, runbook)
the registry first adds the next root to every bundle (prepare), then signs with
it (activate), then drops the old one (retire). Agents and gateways must trust
the next root before the registry's own certificate moves to it, and move their
SVIDs to it before the old root is retired, without waiting for their half-life
renewal (12 h by default). The Watch carries each trust domain's bundle and the
fingerprint of the root that signs now; these pure functions turn that into "the
roots to verify the registry with" and "renew now, because ...". The shells
(ControlPlaneClient.adopt_bundles, the gateway's and the agent's renew loops)
act on the answers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from cryptography import x509

from federation.client.credentials import Identity
from federation.model import TrustDomain
from trust_bundle import parse_spiffe_id
from trust_bundle.spiffe_bundle import certificate_fingerprint
from trust_bundle.validate import chains_to


def own_bundle(identity: Identity, bundles: Mapping[str, TrustDomain]) -> TrustDomain | None:
    """The Watch's bundle for the identity's own trust domain, if it carries one."""
    return bundles.get(parse_spiffe_id(identity.spiffe_id).trust_domain)


def _certificates(pems: Iterable[str | bytes]) -> list[x509.Certificate]:
    out: list[x509.Certificate] = []
    for pem in pems:
        out.extend(x509.load_pem_x509_certificates(pem if isinstance(pem, bytes) else pem.encode()))
    return out


def fingerprints(pem: bytes) -> tuple[str, ...]:
    """SHA-256 fingerprints of every certificate in a PEM blob, sorted."""
    return tuple(sorted({certificate_fingerprint(c) for c in _certificates([pem])}))


def registry_roots(identity: Identity, bundles: Mapping[str, TrustDomain]) -> bytes:
    """The roots to verify the registry with: the Watch's bundle for our trust domain
    (it follows a rotation), else the bundle that came with the SVID."""
    bundle = own_bundle(identity, bundles)
    if bundle is None:
        return identity.bundle_pem
    return "".join(p if p.endswith("\n") else p + "\n" for p in bundle.roots_pem).encode()


def rotation_renewal(identity: Identity, bundles: Mapping[str, TrustDomain]) -> str | None:
    """Why the SVID must be renewed now, or None: it does not chain to the root the
    registry signs with now (a rotation was activated). Unknown signing root (older
    registry, or the root not in the bundle): None, the half-life renewal applies."""
    bundle = own_bundle(identity, bundles)
    if bundle is None or not bundle.signing_root_sha256:
        return None
    signing = [
        c
        for c in _certificates(bundle.roots_pem)
        if certificate_fingerprint(c) == bundle.signing_root_sha256
    ]
    if not signing:
        return None
    leaf, *intermediates = _certificates([identity.chain_pem])
    if chains_to(leaf, intermediates, signing):
        return None
    return (
        f"root rotation: the SVID does not chain to the signing root "
        f"{bundle.signing_root_sha256[:16]}"
    )


def issuing_root(identity: Identity) -> str | None:
    """SHA-256 fingerprint of the root in the identity's bundle that its SVID chains
    to (what operators check before retiring an old root), or None if none does."""
    leaf, *intermediates = _certificates([identity.chain_pem])
    for root in _certificates([identity.bundle_pem]):
        if chains_to(leaf, intermediates, [root]):
            return certificate_fingerprint(root)
    return None
