"""The federation root CA and the per-cluster intermediate CAs.

Why this module exists: the shape of a CA certificate (who may sign what, for
how long, in which trust domain) is the heart of federation trust. Building a
certificate, signing it and validating it are separate functions so each can
be tested alone and issuance always ends with validation.

Hierarchy: one federation root (self-signed, pathLen 1) signs one intermediate
per cluster (pathLen 0, URI name constraint to the cluster's trust domain);
intermediates sign SVIDs (see svid.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID

from trust_bundle.errors import SigningFailed, ValidationFailed
from trust_bundle.ids import trust_domain_id, validate_trust_domain
from trust_bundle.keys import (
    KeyAlgorithm,
    KeyHolder,
    PublicKey,
    generate_key,
    public_key_fingerprint,
)
from trust_bundle.validate import (
    check_ca,
    check_root,
    check_signed_by,
    check_validity,
    fail,
    require_aware,
)

# Istio's self-signed root default lifetime (istiod --root-cert-ttl 87600h = 10 years).
ROOT_LIFETIME = timedelta(days=3650)
# Linkerd's documented issuer lifetime (step certificate create --not-after 8760h = 1 year).
INTERMEDIATE_LIFETIME = timedelta(days=365)
# Backdate notBefore to tolerate clock skew between peers; 5 minutes is the
# allowance Kubernetes' own CSR signer applies (certificates/authority "backdate").
BACKDATE = timedelta(minutes=5)
# Root -> intermediate -> leaf: the root admits exactly one CA below it (RFC 5280 §4.2.1.9).
ROOT_PATH_LENGTH = 1
# Intermediates sign only leaves (issue 3: "path length 0").
INTERMEDIATE_PATH_LENGTH = 0
ORGANIZATION = "meshfed"


def hash_for(algorithm: KeyAlgorithm) -> hashes.SHA256 | hashes.SHA384:
    """RFC 5758 §3.2 / NIST SP 800-57: SHA-256 with P-256, SHA-384 with P-384."""
    return hashes.SHA256() if algorithm is KeyAlgorithm.ECDSA_P256 else hashes.SHA384()


def sign_certificate(builder: x509.CertificateBuilder, issuer_key: KeyHolder) -> x509.Certificate:
    """The signing step: sign ``builder`` with ``issuer_key``; nothing else."""
    try:
        return builder.sign(issuer_key.key, hash_for(issuer_key.algorithm))
    except (ValueError, TypeError) as exc:
        raise SigningFailed(f"cannot sign certificate: {exc}") from exc


@dataclass(frozen=True, slots=True)
class CertificateAuthority:
    """A CA certificate with its key. ``chain`` is the certificates above it up to and
    including the root (empty for a root). ``key`` redacts itself in repr."""

    certificate: x509.Certificate
    key: KeyHolder
    chain: tuple[x509.Certificate, ...] = ()
    trust_domain: str | None = None
    cluster: str | None = None

    @property
    def root(self) -> x509.Certificate:
        return self.chain[-1] if self.chain else self.certificate

    @property
    def is_root(self) -> bool:
        return not self.chain


def _ca_extensions(
    builder: x509.CertificateBuilder, public_key: PublicKey, path_length: int
) -> x509.CertificateBuilder:
    return (
        builder.add_extension(x509.BasicConstraints(ca=True, path_length=path_length), True)
        .add_extension(
            # X509-SVID §4.3: signing certs set keyCertSign, may set cRLSign, nothing else.
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            True,
        )
        # RFC 5280 §4.2.1.2: CA certificates MUST carry a subject key identifier.
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), False)
    )


def build_root_certificate(
    public_key: PublicKey, now: datetime, *, lifetime: timedelta = ROOT_LIFETIME
) -> x509.CertificateBuilder:
    """The build step for a federation root. The subject carries the key fingerprint so
    two roots (current and next during rotation) never share a name."""
    require_aware(now)
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
            x509.NameAttribute(
                NameOID.COMMON_NAME, f"meshfed federation root {public_key_fingerprint(public_key)}"
            ),
        ]
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + lifetime)
    )
    return _ca_extensions(builder, public_key, ROOT_PATH_LENGTH)


def build_intermediate_certificate(
    issuer: CertificateAuthority,
    public_key: PublicKey,
    cluster: str,
    trust_domain: str,
    now: datetime,
    *,
    lifetime: timedelta = INTERMEDIATE_LIFETIME,
) -> x509.CertificateBuilder:
    """The build step for cluster ``cluster``'s intermediate in ``trust_domain``.

    The URI name constraint is the trust domain host: RFC 5280 §4.2.1.10 says a URI
    constraint names the host part, so "td" permits exactly spiffe://td/... (and is
    what OpenSSL enforces). Its own SAN is spiffe://td (X509-SVID §3.2)."""
    require_aware(now)
    validate_trust_domain(trust_domain)
    not_after = min(now + lifetime, issuer.certificate.not_valid_after_utc)
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, cluster),
            x509.NameAttribute(
                NameOID.COMMON_NAME,
                f"meshfed {cluster} intermediate {public_key_fingerprint(public_key)}",
            ),
        ]
    )
    issuer_ski = issuer.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.certificate.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(not_after)
        .add_extension(
            x509.NameConstraints(
                permitted_subtrees=[x509.UniformResourceIdentifier(trust_domain)],
                excluded_subtrees=None,
            ),
            True,  # RFC 5280 §4.2.1.10: conforming CAs MUST mark name constraints critical
        )
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.UniformResourceIdentifier(str(trust_domain_id(trust_domain)))]
            ),
            False,
        )
        # RFC 5280 §4.2.1.1: AKI is required in all but self-signed certificates.
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(issuer_ski.value),
            False,
        )
    )
    return _ca_extensions(builder, public_key, INTERMEDIATE_PATH_LENGTH)


def validate_root_ca(cert: x509.Certificate, now: datetime) -> None:
    """The validate step for a root: CA, self-signed, valid at ``now``."""
    check_root(cert, now)


def validate_intermediate_ca(
    cert: x509.Certificate, root: x509.Certificate, trust_domain: str, now: datetime
) -> None:
    """The validate step for an intermediate: signed by ``root``, valid, CA with pathLen 0
    and a permitted URI subtree of exactly ``trust_domain``."""
    check_root(root, now)
    check_ca(cert, below=0)
    check_validity(cert, now)
    check_signed_by(cert, root)
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    if bc.path_length != INTERMEDIATE_PATH_LENGTH:
        raise fail(cert, f"pathLenConstraint must be 0, is {bc.path_length}")
    try:
        nc = cert.extensions.get_extension_for_class(x509.NameConstraints)
    except x509.ExtensionNotFound as exc:
        raise fail(cert, "intermediate has no name constraints") from exc
    permitted = list(nc.value.permitted_subtrees or [])
    if permitted != [x509.UniformResourceIdentifier(trust_domain)] or not nc.critical:
        raise fail(cert, f"name constraints must permit exactly the trust domain {trust_domain}")


def check_key_matches(cert: x509.Certificate, key: KeyHolder) -> None:
    """A CA's key must be the private half of its certificate's public key."""
    if cert.public_key() != key.public_key:
        raise ValidationFailed("private key does not match the certificate's public key")


def create_root_ca(
    now: datetime,
    *,
    key: KeyHolder | None = None,
    algorithm: KeyAlgorithm = KeyAlgorithm.ECDSA_P256,
    lifetime: timedelta = ROOT_LIFETIME,
) -> CertificateAuthority:
    """Shell: generate (or take) a key, build, sign, validate a federation root."""
    key = key or generate_key(algorithm)
    cert = sign_certificate(build_root_certificate(key.public_key, now, lifetime=lifetime), key)
    validate_root_ca(cert, now)
    return CertificateAuthority(certificate=cert, key=key)


def create_intermediate_ca(
    root: CertificateAuthority,
    cluster: str,
    trust_domain: str,
    now: datetime,
    *,
    key: KeyHolder | None = None,
    algorithm: KeyAlgorithm = KeyAlgorithm.ECDSA_P256,
    lifetime: timedelta = INTERMEDIATE_LIFETIME,
) -> CertificateAuthority:
    """Shell: generate (or take) a key, build, sign with ``root``, validate."""
    if not root.is_root:
        raise SigningFailed("intermediates are signed by a root CA only (path length 0 below)")
    key = key or generate_key(algorithm)
    builder = build_intermediate_certificate(
        root, key.public_key, cluster, trust_domain, now, lifetime=lifetime
    )
    cert = sign_certificate(builder, root.key)
    validate_intermediate_ca(cert, root.certificate, trust_domain, now)
    return CertificateAuthority(
        certificate=cert,
        key=key,
        chain=(root.certificate,),
        trust_domain=trust_domain,
        cluster=cluster,
    )
