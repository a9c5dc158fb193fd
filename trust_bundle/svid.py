"""X.509-SVID issuance from CSRs.

Why this module exists: issuing an SVID is where an attacker would try to get
an identity they do not own. The steps are separate functions, each pure given
its inputs: ``verify_csr`` (parse, check the proof-of-possession signature,
extract the one SPIFFE ID) -> ``check_entitlement`` (the caller's entitlement
is an input) -> ``build_svid_certificate`` -> ``ca.sign_certificate`` ->
``validate.validate_svid``. ``issue_svid`` composes them and never returns a
certificate that failed re-validation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from trust_bundle.ca import (
    ORGANIZATION,
    CertificateAuthority,
    hash_for,
    sign_certificate,
)
from trust_bundle.errors import (
    InvalidCSR,
    InvalidIdentity,
    NotEntitled,
    SigningFailed,
    TrustError,
    ValidationFailed,
)
from trust_bundle.ids import Entitlement, SpiffeId, parse_spiffe_id
from trust_bundle.keys import KeyHolder, PublicKey, algorithm_of
from trust_bundle.tlscert import LeafProfile, build_leaf_certificate
from trust_bundle.validate import ValidatedSvid, ecdsa_signature_hash, validate_svid

# Issue 3: "default SVID lifetime 24 h, configurable".
DEFAULT_SVID_LIFETIME = timedelta(hours=24)
# A CSR larger than this is refused before parsing; a P-384 CSR with one
# 2048-byte URI (SPIFFE-ID §2.3) is well under 4 KiB, 16 KiB leaves headroom.
MAX_CSR_BYTES = 16 * 1024


@dataclass(frozen=True, slots=True)
class CsrClaim:
    """What a verified CSR asks for: one SPIFFE ID for one public key."""

    spiffe_id: SpiffeId
    public_key: PublicKey


@dataclass(frozen=True, slots=True)
class IssuedSvid:
    """A validated SVID: the leaf, the chain to send with it (intermediates), and its root."""

    spiffe_id: SpiffeId
    certificate: x509.Certificate
    intermediates: tuple[x509.Certificate, ...]
    root: x509.Certificate

    @property
    def not_before(self) -> datetime:
        return self.certificate.not_valid_before_utc

    @property
    def not_after(self) -> datetime:
        return self.certificate.not_valid_after_utc

    def chain_pem(self) -> bytes:
        """Leaf then intermediates, PEM: what a TLS server/client presents."""
        return b"".join(
            c.public_bytes(serialization.Encoding.PEM)
            for c in (self.certificate, *self.intermediates)
        )


def parse_csr(data: bytes) -> x509.CertificateSigningRequest:
    """Parse a PEM or DER CSR; InvalidCSR on anything else."""
    if len(data) > MAX_CSR_BYTES:
        raise InvalidCSR(f"CSR larger than {MAX_CSR_BYTES} bytes")
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_csr(data)
        return x509.load_der_x509_csr(data)
    except ValueError as exc:
        raise InvalidCSR(f"unparsable CSR: {exc}") from exc


def verify_csr(csr: x509.CertificateSigningRequest) -> CsrClaim:
    """Check the CSR's self-signature (proof of possession, RFC 2986 §3) and extract
    its claim: exactly one URI SAN holding a leaf SPIFFE ID, a supported key, and no
    request to be a CA."""
    try:
        public_key = csr.public_key()
        extensions = list(csr.extensions)
    except (ValueError, TypeError) as exc:
        raise InvalidCSR(f"malformed CSR: {exc}") from exc
    try:
        algorithm_of(public_key)
    except TrustError as exc:
        raise InvalidCSR(f"CSR key not accepted: {exc}") from exc
    if not isinstance(public_key, PublicKey):  # algorithm_of accepted it, so unreachable
        raise InvalidCSR("CSR key not accepted")
    # What ``csr.is_signature_valid`` checks (an ECDSA signature algorithm for an EC key,
    # the signature over certificationRequestInfo), with the key object parsed once above:
    # is_signature_valid would build a second one from the same bytes.
    try:
        algorithm = ecdsa_signature_hash(csr.signature_algorithm_oid)
        public_key.verify(csr.signature, csr.tbs_certrequest_bytes, ec.ECDSA(algorithm))
    except InvalidSignature as exc:
        raise InvalidCSR("CSR signature does not verify (no proof of key possession)") from exc
    except (ValueError, TypeError) as exc:
        raise InvalidCSR(f"malformed CSR: {exc}") from exc
    uris: list[str] = []
    for ext in extensions:
        if isinstance(ext.value, x509.SubjectAlternativeName):
            uris.extend(ext.value.get_values_for_type(x509.UniformResourceIdentifier))
        elif isinstance(ext.value, x509.BasicConstraints) and ext.value.ca:
            raise InvalidCSR("CSR asks for a CA certificate")
    if len(uris) != 1:
        raise InvalidCSR(f"CSR must carry exactly one URI SAN (X509-SVID §2), has {len(uris)}")
    try:
        spiffe_id = parse_spiffe_id(uris[0])
    except InvalidIdentity as exc:
        raise InvalidCSR(f"CSR URI SAN is not a SPIFFE ID: {exc}") from exc
    if not spiffe_id.is_leaf_id:
        raise InvalidCSR("CSR SPIFFE ID has no path (X509-SVID §3.1)")
    return CsrClaim(spiffe_id=spiffe_id, public_key=public_key)


def check_entitlement(
    claim: CsrClaim, entitlement: Entitlement, issuer: CertificateAuthority
) -> None:
    """Refuse an identity the caller may not hold, or one outside the issuer's trust domain."""
    if issuer.trust_domain is None:
        raise NotEntitled("SVIDs are issued by cluster intermediates, not by the root")
    if claim.spiffe_id.trust_domain != issuer.trust_domain:
        raise NotEntitled(f"{claim.spiffe_id} is outside issuer trust domain {issuer.trust_domain}")
    if not entitlement.allows(claim.spiffe_id):
        raise NotEntitled(f"caller is not entitled to {claim.spiffe_id}")


def build_svid_certificate(
    claim: CsrClaim,
    issuer: CertificateAuthority,
    now: datetime,
    lifetime: timedelta = DEFAULT_SVID_LIFETIME,
    *,
    dns_names: Sequence[str] = (),
    ip_addresses: Sequence[str] = (),
) -> x509.CertificateBuilder:
    """The build step: an X.509-SVID for ``claim``, never outliving its issuer.

    The SVID profile of ``tlscert.build_leaf_certificate``: exactly one URI SAN, the
    SPIFFE ID (X509-SVID §2); cA=false (§4.1); keyUsage digitalSignature, critical
    (§4.3); serverAuth and clientAuth (§4.4). ``dns_names`` / ``ip_addresses`` add
    host SANs next to the SPIFFE ID, for a server that clients also reach by host
    name (the registry's own serving certificate).
    """
    profile = LeafProfile(
        spiffe_id=claim.spiffe_id, dns_names=tuple(dns_names), ip_addresses=tuple(ip_addresses)
    )
    return build_leaf_certificate(profile, claim.public_key, issuer, now, lifetime)


def validate_issued(
    cert: x509.Certificate, claim: CsrClaim, issuer: CertificateAuthority, now: datetime
) -> ValidatedSvid:
    """The validate step after signing: full chain validation to the issuer's root, for
    exactly the claimed ID and public key."""
    validated = validate_svid(
        cert,
        (issuer.certificate, *issuer.chain[:-1]),
        (issuer.root,),
        now,
        expected_id=claim.spiffe_id,
    )
    if cert.public_key() != claim.public_key:
        raise ValidationFailed("issued certificate does not carry the CSR's public key")
    return validated


def issue_svid(
    csr_data: bytes,
    issuer: CertificateAuthority,
    entitlement: Entitlement,
    now: datetime,
    *,
    lifetime: timedelta = DEFAULT_SVID_LIFETIME,
) -> IssuedSvid:
    """Verify the CSR, check entitlement, build, sign, re-validate; return the SVID."""
    claim = verify_csr(parse_csr(csr_data))
    check_entitlement(claim, entitlement, issuer)
    cert = sign_certificate(build_svid_certificate(claim, issuer, now, lifetime), issuer.key)
    validate_issued(cert, claim, issuer, now)
    return IssuedSvid(
        spiffe_id=claim.spiffe_id,
        certificate=cert,
        intermediates=(issuer.certificate, *issuer.chain[:-1]),
        root=issuer.root,
    )


def make_csr(key: KeyHolder, spiffe_id: SpiffeId) -> bytes:
    """Client side (agents, gateways, tests): a PEM CSR for ``spiffe_id`` signed by ``key``."""
    try:
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION)]))
            .add_extension(
                x509.SubjectAlternativeName([x509.UniformResourceIdentifier(str(spiffe_id))]),
                False,
            )
            .sign(key.key, hash_for(key.algorithm))
        )
    except (ValueError, TypeError) as exc:
        raise SigningFailed(f"cannot build CSR: {exc}") from exc
    return csr.public_bytes(serialization.Encoding.PEM)
