"""CA hierarchy, CSR issuance and SVID validation, with a negative case per check."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from trust_bundle.ca import (
    ROOT_PATH_LENGTH,
    CertificateAuthority,
    build_intermediate_certificate,
    build_root_certificate,
    create_intermediate_ca,
    create_root_ca,
    sign_certificate,
    validate_intermediate_ca,
    validate_root_ca,
)
from trust_bundle.errors import InvalidCSR, NotEntitled, SigningFailed, ValidationFailed
from trust_bundle.ids import (
    Entitlement,
    SpiffeId,
    agent_id,
    cluster_entitlement,
    gateway_id,
    workload_id,
)
from trust_bundle.keys import KeyHolder, generate_key
from trust_bundle.svid import (
    DEFAULT_SVID_LIFETIME,
    MAX_CSR_BYTES,
    CsrClaim,
    build_svid_certificate,
    issue_svid,
    make_csr,
    parse_csr,
    verify_csr,
)
from trust_bundle.validate import chains_to, validate_svid

TD_A, TD_B = "a.meshfed.test", "b.meshfed.test"
SERVER, CLIENT = ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH


def _ku(*, digital: bool = True, cert_sign: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(digital, False, False, False, False, cert_sign, False, False, False)


def craft_leaf(
    issuer: CertificateAuthority,
    now: datetime,
    *,
    uris: tuple[str, ...] = (f"spiffe://{TD_A}/ns/x/sa/y",),
    ca: bool | None = False,
    ku: x509.KeyUsage | None = None,
    ku_critical: bool = True,
    eku: tuple[x509.ObjectIdentifier, ...] | None = (SERVER, CLIENT),
    lifetime: timedelta = timedelta(hours=1),
    extra: x509.ExtensionType | None = None,
    public_key: object = None,
    signer: KeyHolder | None = None,
) -> x509.Certificate:
    """A leaf with exactly the given properties, signed without any checks."""
    key = public_key or generate_key().public_key
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "t")]))
        .issuer_name(issuer.certificate.subject)
        .public_key(key)  # type: ignore[arg-type]
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + lifetime)
    )
    if ca is not None:
        builder = builder.add_extension(x509.BasicConstraints(ca=ca, path_length=None), True)
    if ku is not False:
        builder = builder.add_extension(ku or _ku(), ku_critical)
    if eku is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(eku)), False)
    if uris:
        names = [x509.UniformResourceIdentifier(u) for u in uris]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), False)
    if extra is not None:
        builder = builder.add_extension(extra, True)
    return sign_certificate(builder, signer or issuer.key)


def check(pki, cert, now, **kw):
    return validate_svid(cert, [pki.a.certificate], [pki.root.certificate], now, **kw)


# ------------------------------------------------------------------ CA hierarchy


def test_root_build_sign_validate_are_separate_steps(now):
    key = generate_key()
    builder = build_root_certificate(key.public_key, now)
    assert isinstance(builder, x509.CertificateBuilder)
    cert = sign_certificate(builder, key)
    validate_root_ca(cert, now)
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca and bc.value.path_length == ROOT_PATH_LENGTH
    assert isinstance(cert.public_key().curve, ec.SECP256R1)  # type: ignore[union-attr]


def test_intermediate_has_pathlen_zero_and_trust_domain_constraint(pki, now):
    cert = pki.a.certificate
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length == 0
    nc = cert.extensions.get_extension_for_class(x509.NameConstraints)
    assert nc.critical
    assert nc.value.permitted_subtrees == [x509.UniformResourceIdentifier(TD_A)]
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [f"spiffe://{TD_A}"]
    validate_intermediate_ca(cert, pki.root.certificate, TD_A, now)


def test_intermediate_validation_negatives(pki, now):
    with pytest.raises(ValidationFailed, match="exactly the trust domain"):
        validate_intermediate_ca(pki.a.certificate, pki.root.certificate, TD_B, now)
    other_root = create_root_ca(now)
    with pytest.raises(ValidationFailed, match=r"not issued by|bad signature"):
        validate_intermediate_ca(pki.a.certificate, other_root.certificate, TD_A, now)
    with pytest.raises(ValidationFailed, match="expired"):
        validate_intermediate_ca(
            pki.a.certificate, pki.root.certificate, TD_A, now.replace(year=now.year + 2)
        )
    with pytest.raises(ValidationFailed, match="self-issued"):
        validate_root_ca(pki.a.certificate, now)


def test_intermediate_never_outlives_root_and_root_only_signs_intermediates(now):
    root = create_root_ca(now, lifetime=timedelta(days=30))
    inter = create_intermediate_ca(root, "c", "c.test", now)
    assert inter.certificate.not_valid_after_utc <= root.certificate.not_valid_after_utc
    with pytest.raises(SigningFailed):
        create_intermediate_ca(inter, "d", "d.test", now)


def test_p384_hierarchy_works(now):
    from trust_bundle.keys import KeyAlgorithm

    root = create_root_ca(now, algorithm=KeyAlgorithm.ECDSA_P384)
    inter = create_intermediate_ca(root, "c", "c.test", now, algorithm=KeyAlgorithm.ECDSA_P384)
    key = generate_key(KeyAlgorithm.ECDSA_P384)
    svid = issue_svid(
        make_csr(key, gateway_id("c.test", "c")), inter, cluster_entitlement("c.test", "c"), now
    )
    assert svid.certificate.signature_hash_algorithm.name == "sha384"  # type: ignore[union-attr]


# ------------------------------------------------------------------ issuance


def test_issued_svid_has_the_spiffe_profile(pki, now):
    key = generate_key()
    svid = issue_svid(
        make_csr(key, agent_id(TD_A, "a")), pki.a, cluster_entitlement(TD_A, "a"), now
    )
    cert = svid.certificate
    assert svid.spiffe_id == SpiffeId(TD_A, "/meshfed/agent/a")
    assert svid.not_after - now == DEFAULT_SVID_LIFETIME
    assert set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == {
        SERVER,
        CLIENT,
    }
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature and not ku.value.key_cert_sign
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert cert.public_key() == key.public_key
    assert svid.intermediates == (pki.a.certificate,) and svid.root == pki.root.certificate


def test_lifetime_is_configurable_and_clamped_to_the_issuer(pki, now):
    key = generate_key()
    ent = cluster_entitlement(TD_A, "a")
    short = issue_svid(
        make_csr(key, gateway_id(TD_A, "a")), pki.a, ent, now, lifetime=timedelta(hours=1)
    )
    assert short.not_after - now == timedelta(hours=1)
    long = issue_svid(
        make_csr(key, gateway_id(TD_A, "a")), pki.a, ent, now, lifetime=timedelta(days=9999)
    )
    assert long.not_after == pki.a.certificate.not_valid_after_utc
    with pytest.raises(SigningFailed):
        issue_svid(make_csr(key, gateway_id(TD_A, "a")), pki.a, ent, now, lifetime=timedelta(0))


def test_workload_entitlement_by_namespace(pki, now):
    key = generate_key()
    ent = cluster_entitlement(TD_A, "a", namespaces=["shop"])
    svid = issue_svid(make_csr(key, workload_id(TD_A, "shop", "web")), pki.a, ent, now)
    assert str(svid.spiffe_id) == f"spiffe://{TD_A}/ns/shop/sa/web"
    with pytest.raises(NotEntitled):
        issue_svid(make_csr(key, workload_id(TD_A, "bank", "web")), pki.a, ent, now)


def test_csr_for_another_clusters_identity_is_refused(pki, now):
    key = generate_key()
    entitlement_a = cluster_entitlement(TD_A, "a")
    # B's gateway identity through A's intermediate: other trust domain
    with pytest.raises(NotEntitled, match="outside issuer trust domain"):
        issue_svid(make_csr(key, gateway_id(TD_B, "b")), pki.a, entitlement_a, now)
    # ... and through B's own intermediate with A's entitlement
    with pytest.raises(NotEntitled, match="not entitled"):
        issue_svid(make_csr(key, gateway_id(TD_B, "b")), pki.b, entitlement_a, now)
    # same trust domain, another cluster's name
    with pytest.raises(NotEntitled):
        issue_svid(make_csr(key, gateway_id(TD_A, "c")), pki.a, entitlement_a, now)
    with pytest.raises(NotEntitled, match="not by the root"):
        issue_svid(make_csr(key, gateway_id(TD_A, "a")), pki.root, entitlement_a, now)
    with pytest.raises(NotEntitled):
        issue_svid(make_csr(key, gateway_id(TD_A, "a")), pki.a, Entitlement(), now)


def test_tampered_csr_signature_is_refused(pki, now):
    der = parse_csr(make_csr(generate_key(), gateway_id(TD_A, "a"))).public_bytes(
        serialization.Encoding.DER
    )
    tampered = der[:-3] + bytes([der[-3] ^ 0x01]) + der[-2:]
    with pytest.raises(InvalidCSR):
        issue_svid(tampered, pki.a, cluster_entitlement(TD_A, "a"), now)


def _csr(key, uris=(), ca=False) -> bytes:
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
    if uris:
        names = [x509.UniformResourceIdentifier(u) for u in uris]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), False)
    if ca:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


@pytest.mark.parametrize(
    ("uris", "ca", "message"),
    [
        ((), False, "exactly one URI SAN"),
        ((f"spiffe://{TD_A}/x", f"spiffe://{TD_A}/y"), False, "exactly one URI SAN"),
        (("https://a.example/x",), False, "not a SPIFFE ID"),
        ((f"spiffe://{TD_A}",), False, "no path"),
        ((f"spiffe://{TD_A}/meshfed/gateway/a",), True, "CA certificate"),
    ],
)
def test_malformed_csrs_are_refused(uris, ca, message):
    with pytest.raises(InvalidCSR, match=message):
        verify_csr(parse_csr(_csr(generate_key().key, uris, ca)))


def test_unparsable_oversized_and_rsa_csrs_are_refused():
    with pytest.raises(InvalidCSR, match="unparsable"):
        parse_csr(b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n")
    with pytest.raises(InvalidCSR, match="unparsable"):
        parse_csr(b"\x30\x03\x02\x01\x01")
    with pytest.raises(InvalidCSR, match="larger"):
        parse_csr(b"x" * (MAX_CSR_BYTES + 1))
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(InvalidCSR, match="key not accepted"):
        verify_csr(parse_csr(_csr(rsa_key, (f"spiffe://{TD_A}/x",))))


def test_build_sign_validate_are_separate_for_svids(pki, now):
    claim = CsrClaim(gateway_id(TD_A, "a"), generate_key().public_key)
    builder = build_svid_certificate(claim, pki.a, now)
    cert = sign_certificate(builder, pki.a.key)
    assert check(pki, cert, now, expected_id=claim.spiffe_id).spiffe_id == claim.spiffe_id


def test_serving_svid_carries_host_names_next_to_its_spiffe_id(pki, now):
    """A server reached by host name (the registry) gets DNS/IP SANs; still a valid SVID."""
    claim = CsrClaim(gateway_id(TD_A, "a"), generate_key().public_key)
    builder = build_svid_certificate(
        claim, pki.a, now, dns_names=["registry.example", "registry.example"],
        ip_addresses=["127.0.0.1", "::1"],
    )  # fmt: skip
    cert = sign_certificate(builder, pki.a.key)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["registry.example"]  # deduplicated
    assert [str(a) for a in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1", "::1"]
    assert check(pki, cert, now, expected_id=claim.spiffe_id).spiffe_id == claim.spiffe_id
    with pytest.raises(SigningFailed, match="not an IP"):
        build_svid_certificate(claim, pki.a, now, ip_addresses=["registry.example"])


# ------------------------------------------------------------------ validation


def test_valid_leaf_validates(pki, now):
    validated = check(pki, craft_leaf(pki.a, now), now)
    assert validated.root == pki.root.certificate and len(validated.path) == 3


def test_wrong_expected_id(pki, now):
    with pytest.raises(ValidationFailed, match="expected"):
        check(pki, craft_leaf(pki.a, now), now, expected_id=gateway_id(TD_A, "a"))


def test_expired_and_not_yet_valid(pki, now):
    leaf = craft_leaf(pki.a, now)
    with pytest.raises(ValidationFailed, match="expired"):
        check(pki, leaf, now + timedelta(hours=2))
    with pytest.raises(ValidationFailed, match="not yet valid"):
        check(pki, leaf, now - timedelta(hours=1))


def test_expired_intermediate(now):
    past = now - timedelta(days=10)
    root = create_root_ca(past)
    inter = create_intermediate_ca(root, "a", TD_A, past, lifetime=timedelta(days=1))
    leaf = craft_leaf(inter, past)
    with pytest.raises(ValidationFailed, match="expired"):
        validate_svid(
            leaf,
            [inter.certificate],
            [root.certificate],
            now - timedelta(days=10) + timedelta(days=2),
        )


def test_bad_signature_and_foreign_root(pki, now):
    forged = craft_leaf(pki.a, now, signer=generate_key())
    with pytest.raises(ValidationFailed, match=r"bad signature|does not chain"):
        check(pki, forged, now)
    other = create_root_ca(now)
    with pytest.raises(ValidationFailed, match="does not chain"):
        validate_svid(craft_leaf(pki.a, now), [pki.a.certificate], [other.certificate], now)
    with pytest.raises(ValidationFailed, match="no trusted roots"):
        validate_svid(craft_leaf(pki.a, now), [pki.a.certificate], [], now)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ca": True}, "cA=false"),
        ({"ca": None}, "cA=false"),
        ({"ku": False}, "keyUsage missing"),
        ({"ku_critical": False}, "keyUsage missing or not critical"),
        ({"ku": _ku(digital=False)}, "lacks digitalSignature"),
        ({"ku": _ku(cert_sign=True)}, "must not allow keyCertSign"),
        ({"eku": None}, "no extendedKeyUsage"),
        ({"eku": (SERVER,)}, "lacks clientAuth"),
        ({"eku": (CLIENT,)}, "lacks serverAuth"),
        ({"uris": ()}, "no subjectAltName"),
        ({"uris": (f"spiffe://{TD_A}/x", f"spiffe://{TD_A}/y")}, "exactly one URI SAN"),
        ({"uris": ("https://a.example/x",)}, "not a SPIFFE ID"),
        ({"uris": (f"spiffe://{TD_A}",)}, "no path"),
        ({"uris": (f"spiffe://{TD_B}/ns/x/sa/y",)}, "name constraints do not permit"),
        ({"extra": x509.OCSPNoCheck()}, "unknown critical extension"),
    ],
)
def test_leaf_rule_violations(pki, now, kwargs, message):
    with pytest.raises(ValidationFailed, match=message):
        check(pki, craft_leaf(pki.a, now, **kwargs), now)


def test_rsa_leaf_is_rejected(pki, now):
    rsa_public = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    with pytest.raises(ValidationFailed, match="unsupported public key"):
        check(pki, craft_leaf(pki.a, now, public_key=rsa_public), now)


def test_path_length_zero_is_enforced(pki, now):
    """An intermediate cannot mint a sub-CA: a chain through one fails pathLen."""
    sub_key = generate_key()
    sub_builder = build_intermediate_certificate(pki.a, sub_key.public_key, "sub", TD_A, now)
    sub = CertificateAuthority(
        sign_certificate(sub_builder, pki.a.key),
        sub_key,
        (pki.a.certificate, pki.root.certificate),
        TD_A,
        "sub",
    )
    leaf = craft_leaf(sub, now)
    with pytest.raises(ValidationFailed, match="pathLenConstraint"):
        validate_svid(leaf, [sub.certificate, pki.a.certificate], [pki.root.certificate], now)


def test_leaf_used_as_issuer_is_not_a_ca(pki, now):
    key = generate_key()
    fake_ca_cert = craft_leaf(pki.a, now, public_key=key.public_key)
    fake = CertificateAuthority(fake_ca_cert, key, (pki.a.certificate, pki.root.certificate))
    leaf = craft_leaf(fake, now)
    with pytest.raises(ValidationFailed, match="not a CA"):
        validate_svid(leaf, [fake_ca_cert, pki.a.certificate], [pki.root.certificate], now)


def test_naive_time_is_rejected(pki, now):
    with pytest.raises(ValidationFailed, match="timezone-aware"):
        check(pki, craft_leaf(pki.a, now), now.replace(tzinfo=None))


def test_chains_to(pki, now):
    leaf = craft_leaf(pki.a, now)
    assert chains_to(leaf, [pki.a.certificate], [pki.root.certificate])
    assert chains_to(pki.root.certificate, [], [pki.root.certificate])
    assert not chains_to(leaf, [pki.a.certificate], [create_root_ca(now).certificate])
