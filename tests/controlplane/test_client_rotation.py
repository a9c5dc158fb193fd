"""federation.client.rotation: the pure decisions agents and gateways take from the
Watch's bundles during a root rotation, fed real certificates (trust_bundle)."""

from __future__ import annotations

from datetime import UTC, datetime

from cryptography.hazmat.primitives import serialization

from federation.client import Identity
from federation.client.rotation import (
    fingerprints,
    issuing_root,
    registry_roots,
    rotation_renewal,
)
from federation.model import TrustDomain
from trust_bundle import (
    CertificateAuthority,
    cluster_entitlement,
    create_intermediate_ca,
    create_root_ca,
    gateway_id,
    generate_key,
    issue_svid,
    make_csr,
)
from trust_bundle.spiffe_bundle import certificate_fingerprint

NOW = datetime.now(UTC)
TD = "east.meshfed.test"


def pem(ca: CertificateAuthority) -> str:
    return ca.certificate.public_bytes(serialization.Encoding.PEM).decode()


def svid_under(root: CertificateAuthority, bundle: list[CertificateAuthority]) -> Identity:
    inter = create_intermediate_ca(root, "east", TD, NOW)
    key = generate_key()
    svid = issue_svid(
        make_csr(key, gateway_id(TD, "east")), inter, cluster_entitlement(TD, "east"), NOW
    )
    from cryptography.hazmat.primitives import serialization

    chain = b"".join(
        c.public_bytes(serialization.Encoding.PEM) for c in (svid.certificate, *svid.intermediates)
    )
    return Identity(
        str(svid.spiffe_id), key.unencrypted_pkcs8_pem(), chain, "".join(map(pem, bundle)).encode()
    )


def bundle(roots: list[CertificateAuthority], signing: CertificateAuthority | None) -> TrustDomain:
    fp = "" if signing is None else certificate_fingerprint(signing.certificate)
    return TrustDomain(TD, tuple(pem(r) for r in roots), len(roots), 300, fp)


OLD, NEW = create_root_ca(NOW), create_root_ca(NOW)
FP_OLD, FP_NEW = (certificate_fingerprint(r.certificate) for r in (OLD, NEW))


def test_stable_federation_asks_for_nothing() -> None:
    me = svid_under(OLD, [OLD])
    bundles = {TD: bundle([OLD], OLD)}
    assert rotation_renewal(me, bundles) is None
    assert fingerprints(registry_roots(me, bundles)) == (FP_OLD,)
    assert issuing_root(me) == FP_OLD


def test_prepare_adds_the_next_root_to_trust_without_a_renewal() -> None:
    me = svid_under(OLD, [OLD])
    bundles = {TD: bundle([OLD, NEW], OLD)}
    assert fingerprints(registry_roots(me, bundles)) == tuple(sorted((FP_OLD, FP_NEW)))
    assert rotation_renewal(me, bundles) is None


def test_activate_asks_an_old_root_svid_to_renew_and_a_new_one_not() -> None:
    bundles = {TD: bundle([OLD, NEW], NEW)}
    reason = rotation_renewal(svid_under(OLD, [OLD, NEW]), bundles)
    assert reason is not None and FP_NEW[:16] in reason
    renewed = svid_under(NEW, [OLD, NEW])
    assert rotation_renewal(renewed, bundles) is None
    assert issuing_root(renewed) == FP_NEW


def test_retire_leaves_only_the_new_root_to_verify_the_registry_with() -> None:
    me = svid_under(NEW, [OLD, NEW])
    bundles = {TD: bundle([NEW], NEW)}
    assert fingerprints(registry_roots(me, bundles)) == (FP_NEW,)
    assert rotation_renewal(me, bundles) is None


def test_unknown_signing_root_or_no_bundle_keeps_the_half_life_schedule() -> None:
    me = svid_under(OLD, [OLD])
    assert rotation_renewal(me, {}) is None  # no bundle for our trust domain
    assert registry_roots(me, {}) == me.bundle_pem  # keep what came with the SVID
    assert rotation_renewal(me, {TD: bundle([OLD, NEW], None)}) is None  # older registry
    stranger = create_root_ca(NOW)  # a signing root the bundle does not hold
    assert rotation_renewal(me, {TD: bundle([OLD, NEW], stranger)}) is None
    assert rotation_renewal(me, {"other.test": bundle([NEW], NEW)}) is None


def test_issuing_root_is_none_when_the_bundle_lacks_it() -> None:
    assert issuing_root(svid_under(OLD, [NEW])) is None
