"""The per-issuer caches of SVID issuance and the signature check that replaced
``verify_directly_issued_by``: a cache never serves a stale issuer, and the check
refuses what cryptography's own check refuses."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from trust_bundle.ca import CertificateAuthority, sign_certificate
from trust_bundle.errors import InvalidCSR, ValidationFailed
from trust_bundle.ids import cluster_entitlement, gateway_id
from trust_bundle.keys import KeyAlgorithm, generate_key
from trust_bundle.svid import issue_svid, make_csr, parse_csr, verify_csr
from trust_bundle.tlscert import issuer_fields
from trust_bundle.validate import (
    check_signed_by,
    issuer_public_key,
    signed_parts,
    validate_svid,
    verify_signature,
)

TD_A = "a.meshfed.test"  # the pki fixture's cluster a (conftest.py)


def _same_name_new_key(ca: CertificateAuthority, root: CertificateAuthority, now):
    """``ca`` re-issued: the same subject and extensions, a new key pair and serial."""
    key = generate_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(ca.certificate.subject)
        .issuer_name(root.certificate.subject)
        .public_key(key.public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=30))
    )
    for ext in ca.certificate.extensions:
        value = ext.value
        if isinstance(value, x509.SubjectKeyIdentifier):
            value = x509.SubjectKeyIdentifier.from_public_key(key.public_key)
        builder = builder.add_extension(value, ext.critical)
    cert = sign_certificate(builder, root.key)
    return replace(ca, certificate=cert, key=key)


def test_reissued_intermediate_with_same_name_is_not_served_from_stale_caches(pki, now):
    old = pki.a
    entitlement = cluster_entitlement(TD_A, "a")
    spiffe_id = gateway_id(TD_A, "a")
    # Warm every cache with the old intermediate.
    old_svid = issue_svid(make_csr(generate_key(), spiffe_id), old, entitlement, now)
    new = _same_name_new_key(old, pki.root, now)
    assert new.certificate.subject == old.certificate.subject
    assert issuer_public_key(new.certificate) == new.key.public_key
    assert issuer_public_key(old.certificate) == old.key.public_key
    new_ski = new.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    assert issuer_fields(new.certificate).authority_key_identifier.key_identifier == (
        new_ski.value.digest
    )
    # Issued by the re-issued CA: its AKI names the new key, and it validates under it.
    new_svid = issue_svid(make_csr(generate_key(), spiffe_id), new, entitlement, now)
    aki = new_svid.certificate.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)
    assert aki.value.key_identifier == new_ski.value.digest
    roots = [pki.root.certificate]
    validate_svid(new_svid.certificate, [new.certificate], roots, now)
    # Neither leaf validates under the other intermediate, though the names match.
    with pytest.raises(ValidationFailed, match="bad signature"):
        validate_svid(old_svid.certificate, [new.certificate], roots, now)
    with pytest.raises(ValidationFailed, match="bad signature"):
        validate_svid(new_svid.certificate, [old.certificate], roots, now)


def _tamper_outer_algorithm(cert: x509.Certificate) -> x509.Certificate:
    """The outer signatureAlgorithm changed from ecdsa-with-SHA256 to -SHA384."""
    der = bytearray(cert.public_bytes(serialization.Encoding.DER))
    sha256 = bytes.fromhex("06082a8648ce3d040302")
    at = der.rfind(sha256)
    assert at > der.find(sha256)  # the outer one, after tbsCertificate
    der[at + len(sha256) - 1] = 0x03
    return x509.load_der_x509_certificate(bytes(der))


def test_signature_check_refuses_what_verify_directly_issued_by_refuses(pki, now):
    svid = issue_svid(
        make_csr(generate_key(), gateway_id(TD_A, "a")), pki.a, cluster_entitlement(TD_A, "a"), now
    )
    leaf = svid.certificate
    verify_signature(leaf, pki.a.certificate)
    verify_signature(pki.a.certificate, pki.root.certificate)
    verify_signature(pki.root.certificate, pki.root.certificate)
    forged = _same_name_new_key(pki.a, pki.root, now)
    tampered = _tamper_outer_algorithm(leaf)
    for cert, issuer, error in (
        (leaf, forged.certificate, InvalidSignature),  # same name, other key
        (leaf, pki.b.certificate, ValueError),  # other name
        (tampered, pki.a.certificate, ValueError),  # inner != outer algorithm
    ):
        with pytest.raises(error):
            cert.verify_directly_issued_by(issuer)
        with pytest.raises(error):
            verify_signature(cert, issuer)
        with pytest.raises(ValidationFailed):
            check_signed_by(cert, issuer)
    with pytest.raises(ValidationFailed, match="not issued by"):
        validate_svid(tampered, [pki.a.certificate], [pki.root.certificate], now)


def test_signed_parts_finds_the_fields_of_p256_and_p384_certificates(pki, now):
    for cert in (pki.a.certificate, pki.root.certificate):
        tbs, inner, outer = signed_parts(cert.public_bytes(serialization.Encoding.DER))
        assert tbs == cert.tbs_certificate_bytes
        assert inner == outer
    with pytest.raises(ValueError, match="truncated"):
        signed_parts(pki.a.certificate.public_bytes(serialization.Encoding.DER)[:100])


def test_csr_signed_with_another_ecdsa_hash_is_accepted_and_foreign_keys_refused():
    key = generate_key(KeyAlgorithm.ECDSA_P256)
    spiffe_id = gateway_id(TD_A, "a")
    names = x509.SubjectAlternativeName([x509.UniformResourceIdentifier(str(spiffe_id))])
    builder = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .add_extension(names, False)
    )
    csr = builder.sign(key.key, hashes.SHA384())
    assert csr.is_signature_valid
    assert verify_csr(csr).spiffe_id == spiffe_id
    ed_csr = builder.sign(ed25519.Ed25519PrivateKey.generate(), None)
    with pytest.raises(InvalidCSR, match="key not accepted"):
        verify_csr(ed_csr)
    # The signature is checked with the key the CSR carries, and nothing else.
    other = parse_csr(make_csr(generate_key(), spiffe_id))
    assert verify_csr(other).public_key == other.public_key()
