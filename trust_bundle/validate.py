"""Validation of CA certificates and X.509-SVID chains.

Why this module exists: issuance re-validates every certificate before it is
returned, and peers' SVIDs must be checked the same way, so the rules live in
one pure place (time is a parameter; no clock, no I/O). The checks follow
RFC 5280 §6.1 path validation plus the SPIFFE X509-SVID leaf rules, and every
failure is a ``ValidationFailed`` naming the certificate and the rule.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID, SignatureAlgorithmOID

from trust_bundle.errors import InvalidIdentity, TrustError, ValidationFailed
from trust_bundle.ids import SpiffeId, parse_spiffe_id
from trust_bundle.keys import algorithm_of

_T = TypeVar("_T", bound=x509.ExtensionType)

# RFC 5280 §6.1.4 (o): an unrecognised critical extension makes a path invalid.
# These are the extensions this validator understands.
KNOWN_EXTENSIONS = frozenset(
    {
        ExtensionOID.BASIC_CONSTRAINTS,
        ExtensionOID.KEY_USAGE,
        ExtensionOID.EXTENDED_KEY_USAGE,
        ExtensionOID.SUBJECT_ALTERNATIVE_NAME,
        ExtensionOID.NAME_CONSTRAINTS,
        ExtensionOID.SUBJECT_KEY_IDENTIFIER,
        ExtensionOID.AUTHORITY_KEY_IDENTIFIER,
    }
)
# meshfed's hierarchy is root -> cluster intermediate -> leaf: three certificates.
# One more level is tolerated so an operator-supplied upstream intermediate fits.
MAX_PATH_CERTIFICATES = 4


def require_aware(now: datetime) -> datetime:
    """Times are always timezone-aware (cryptography's *_utc properties are)."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValidationFailed("time must be timezone-aware (UTC)")
    return now


def describe(cert: x509.Certificate) -> str:
    """Short human name of a certificate for error messages."""
    return f"{cert.subject.rfc4514_string() or '<empty subject>'} (serial {cert.serial_number:x})"


def _ext(cert: x509.Certificate, kind: type[_T]) -> x509.Extension[_T] | None:
    try:
        return cert.extensions.get_extension_for_class(kind)
    except x509.ExtensionNotFound:
        return None
    except ValueError as exc:  # duplicate or undecodable extension
        raise fail(cert, f"malformed extensions: {exc}") from exc


def fail(cert: x509.Certificate, message: str) -> ValidationFailed:
    return ValidationFailed(f"{describe(cert)}: {message}")


def check_validity(cert: x509.Certificate, now: datetime) -> None:
    """RFC 5280 §6.1.3 (a)(2): ``now`` lies within [notBefore, notAfter]."""
    require_aware(now)
    if now < cert.not_valid_before_utc:
        raise fail(cert, f"not yet valid (notBefore {cert.not_valid_before_utc})")
    if now > cert.not_valid_after_utc:
        raise fail(cert, f"expired (notAfter {cert.not_valid_after_utc})")


# Links between CA certificates recur on every issuance (intermediate -> root);
# their signature check is a pure function of the two DER encodings, so a
# successful result is memoised. Failures are never cached. Size: far more CA
# links than a federation has (two roots x a few hundred clusters).
CA_LINK_CACHE_SIZE = 4096


# The signature algorithms of the key algorithms meshfed accepts (keys.KeyAlgorithm).
ECDSA_SIGNATURE_HASHES: dict[x509.ObjectIdentifier, type[hashes.SHA256 | hashes.SHA384]] = {
    SignatureAlgorithmOID.ECDSA_WITH_SHA256: hashes.SHA256,
    SignatureAlgorithmOID.ECDSA_WITH_SHA384: hashes.SHA384,
}


def ecdsa_signature_hash(oid: x509.ObjectIdentifier) -> hashes.SHA256 | hashes.SHA384:
    """The hash of ECDSA signature algorithm ``oid``; ValueError for any other algorithm."""
    kind = ECDSA_SIGNATURE_HASHES.get(oid)
    if kind is None:
        raise ValueError(f"unsupported signature algorithm {oid.dotted_string}")
    return kind()


def _der_element(data: bytes, offset: int) -> tuple[int, int, int]:
    """(tag, start of contents, end) of the DER element at ``offset``; ValueError if
    truncated. Just enough DER to find the top-level fields of a certificate."""
    if offset + 2 > len(data):
        raise ValueError("truncated DER")
    tag, length = data[offset], data[offset + 1]
    start = offset + 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4 or start + count > len(data):
            raise ValueError("bad DER length")
        length = int.from_bytes(data[start : start + count], "big")
        start += count
    end = start + length
    if end > len(data):
        raise ValueError("truncated DER")
    return tag, start, end


def signed_parts(der: bytes) -> tuple[bytes, bytes, bytes]:
    """(tbsCertificate, tbsCertificate.signature, signatureAlgorithm) of a certificate's
    DER, the last two as DER AlgorithmIdentifiers (RFC 5280 §4.1.1.1, §4.1.1.2, §4.1.2.3)."""
    tag, offset, _ = _der_element(der, 0)
    if tag != 0x30:
        raise ValueError("certificate is not a SEQUENCE")
    tag, tbs_start, tbs_end = _der_element(der, offset)
    if tag != 0x30:
        raise ValueError("tbsCertificate is not a SEQUENCE")
    tag, _, outer_end = _der_element(der, tbs_end)
    if tag != 0x30:
        raise ValueError("signatureAlgorithm is not a SEQUENCE")
    tag, _, field_end = _der_element(der, tbs_start)
    if tag == 0xA0:  # [0] EXPLICIT version
        tag, _, field_end = _der_element(der, field_end)
    if tag != 0x02:  # serialNumber INTEGER
        raise ValueError("tbsCertificate has no serial number")
    tag, _, inner_end = _der_element(der, field_end)
    if tag != 0x30:
        raise ValueError("tbsCertificate has no signature AlgorithmIdentifier")
    return der[offset:tbs_end], der[field_end:inner_end], der[tbs_end:outer_end]


@functools.lru_cache(maxsize=CA_LINK_CACHE_SIZE)
def issuer_public_key(issuer: x509.Certificate) -> ec.EllipticCurvePublicKey:
    """The public key object of CA certificate ``issuer``, memoised: building it from
    the SubjectPublicKeyInfo costs about a third of a verification. Keyed by the
    certificate (its DER: equality and hash of x509.Certificate), so a re-issued CA
    with the same name and a new key is a different entry. ValueError for a key
    that is not an elliptic-curve key."""
    key = issuer.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise ValueError(f"issuer key is {type(key).__name__}, not an ECDSA key")
    return key


def verify_signature(cert: x509.Certificate, issuer: x509.Certificate) -> None:
    """What ``cert.verify_directly_issued_by(issuer)`` checks, with the issuer's public
    key taken from ``issuer_public_key``: the issuer name equals the issuer's subject,
    the signature algorithm inside tbsCertificate equals the outer one, the algorithm
    is ECDSA, and the signature over tbsCertificate verifies under the issuer's key.
    ValueError on a mismatch, InvalidSignature if the signature does not verify."""
    if cert.issuer != issuer.subject:
        raise ValueError("Issuer certificate subject does not match certificate issuer.")
    tbs, inner, outer = signed_parts(cert.public_bytes(serialization.Encoding.DER))
    if inner != outer:
        raise ValueError("Inner and outer signature algorithms do not match.")
    algorithm = ecdsa_signature_hash(cert.signature_algorithm_oid)
    issuer_public_key(issuer).verify(cert.signature, tbs, ec.ECDSA(algorithm))


@functools.lru_cache(maxsize=CA_LINK_CACHE_SIZE)
def _verified_ca_link(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    verify_signature(cert, issuer)
    return True


def check_signed_by(
    cert: x509.Certificate, issuer: x509.Certificate, *, memoise: bool = False
) -> None:
    """RFC 5280 §6.1.3 (a)(1) and (a)(4): issuer name chains and the signature verifies.
    ``memoise`` (for CA-to-CA links only) reuses an earlier successful check."""
    try:
        if memoise:
            _verified_ca_link(cert, issuer)
        else:
            verify_signature(cert, issuer)
    except InvalidSignature as exc:
        raise fail(cert, f"bad signature by {describe(issuer)}") from exc
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise fail(cert, f"not issued by {describe(issuer)}: {exc}") from exc


def check_extensions_understood(cert: x509.Certificate) -> None:
    """RFC 5280 §6.1.4 (o): reject unknown critical extensions; also rejects undecodable ones."""
    try:
        extensions = list(cert.extensions)
    except ValueError as exc:
        raise fail(cert, f"malformed extensions: {exc}") from exc
    for ext in extensions:
        if ext.critical and ext.oid not in KNOWN_EXTENSIONS:
            raise fail(cert, f"unknown critical extension {ext.oid.dotted_string}")


def check_key_supported(cert: x509.Certificate) -> None:
    """Only the key algorithms of keys.KeyAlgorithm are accepted anywhere in a path."""
    try:
        algorithm_of(cert.public_key())
    except (TrustError, ValueError, UnsupportedAlgorithm) as exc:
        raise fail(cert, "unsupported public key") from exc


def check_ca(cert: x509.Certificate, *, below: int) -> None:
    """A signing certificate: cA=true (critical), keyCertSign, and a pathLenConstraint that
    admits ``below`` further CA certificates (RFC 5280 §6.1.4 (k)-(n); X509-SVID §4.1, §4.3)."""
    check_extensions_understood(cert)
    check_key_supported(cert)
    bc = _ext(cert, x509.BasicConstraints)
    if bc is None or not bc.value.ca:
        raise fail(cert, "not a CA (basicConstraints cA must be true)")
    if not bc.critical:
        raise fail(cert, "basicConstraints must be critical (RFC 5280 §4.2.1.9)")
    if bc.value.path_length is not None and below > bc.value.path_length:
        raise fail(cert, f"pathLenConstraint {bc.value.path_length} exceeded")
    ku = _ext(cert, x509.KeyUsage)
    if ku is None or not ku.critical:
        raise fail(cert, "keyUsage missing or not critical (X509-SVID §4.3)")
    if not ku.value.key_cert_sign:
        raise fail(cert, "keyUsage lacks keyCertSign (X509-SVID §4.3)")


@functools.lru_cache(maxsize=CA_LINK_CACHE_SIZE)
def _checked_ca(cert: x509.Certificate, below: int) -> bool:
    """check_ca memoised: a pure function of the certificate bytes and depth."""
    check_ca(cert, below=below)
    return True


def check_root(cert: x509.Certificate, now: datetime) -> None:
    """A trust anchor: a CA, self-issued, self-signed, currently valid."""
    check_ca(cert, below=0)
    check_validity(cert, now)
    if cert.subject != cert.issuer:
        raise fail(cert, "root is not self-issued")
    check_signed_by(cert, cert)


def uri_constraint_permits(constraint: str, host: str) -> bool:
    """RFC 5280 §4.2.1.10 URI constraint on a URI's ``host``: a leading '.' matches any
    subdomain, otherwise the host must match exactly (case-insensitive)."""
    constraint, host = constraint.lower(), host.lower()
    if constraint.startswith("."):
        return host.endswith(constraint)
    return host == constraint


@functools.lru_cache(maxsize=CA_LINK_CACHE_SIZE)
def uri_constraints(ca: x509.Certificate) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(permitted, excluded) URI name constraints of ``ca``; other name forms are refused
    because this validator cannot apply them (RFC 5280 §6.1.3 (b)-(c)). Memoised: pure."""
    nc = _ext(ca, x509.NameConstraints)
    if nc is None:
        return (), ()
    subtrees = [*(nc.value.permitted_subtrees or []), *(nc.value.excluded_subtrees or [])]
    for subtree in subtrees:
        if not isinstance(subtree, x509.UniformResourceIdentifier):
            raise fail(ca, f"unsupported name constraint {subtree!r}")
    return (
        tuple(str(p.value) for p in nc.value.permitted_subtrees or []),
        tuple(str(e.value) for e in nc.value.excluded_subtrees or []),
    )


def check_name_constraints(ca: x509.Certificate, ids: Sequence[SpiffeId]) -> None:
    """Apply ``ca``'s URI name constraints to the SPIFFE IDs below it."""
    permitted, excluded = uri_constraints(ca)
    for spiffe_id in ids:
        host = spiffe_id.trust_domain
        if permitted and not any(uri_constraint_permits(p, host) for p in permitted):
            raise fail(ca, f"name constraints do not permit {spiffe_id}")
        if any(uri_constraint_permits(e, host) for e in excluded):
            raise fail(ca, f"name constraints exclude {spiffe_id}")


def leaf_spiffe_id(leaf: x509.Certificate) -> SpiffeId:
    """X509-SVID §2 and §5.2: exactly one URI SAN, a spiffe ID with a non-root path."""
    san = _ext(leaf, x509.SubjectAlternativeName)
    if san is None:
        raise fail(leaf, "no subjectAltName")
    uris = san.value.get_values_for_type(x509.UniformResourceIdentifier)
    if len(uris) != 1:
        raise fail(leaf, f"must carry exactly one URI SAN, has {len(uris)}")
    if len(leaf.subject) == 0 and not san.critical:
        raise fail(leaf, "empty subject needs a critical SAN (X509-SVID §3.1)")
    try:
        spiffe_id = parse_spiffe_id(uris[0])
    except InvalidIdentity as exc:
        raise fail(leaf, f"URI SAN is not a SPIFFE ID: {exc}") from exc
    if not spiffe_id.is_leaf_id:
        raise fail(leaf, "leaf SPIFFE ID has no path (X509-SVID §3.1)")
    return spiffe_id


def check_leaf(leaf: x509.Certificate) -> SpiffeId:
    """X509-SVID §4.1, §4.3, §4.4, §5.2: cA=false; digitalSignature and neither keyCertSign
    nor cRLSign (keyUsage critical); EKU with serverAuth and clientAuth (meshfed requires it)."""
    check_extensions_understood(leaf)
    check_key_supported(leaf)
    bc = _ext(leaf, x509.BasicConstraints)
    if bc is None or bc.value.ca:
        raise fail(leaf, "leaf must carry basicConstraints cA=false")
    ku = _ext(leaf, x509.KeyUsage)
    if ku is None or not ku.critical:
        raise fail(leaf, "keyUsage missing or not critical (X509-SVID §4.3)")
    if not ku.value.digital_signature:
        raise fail(leaf, "keyUsage lacks digitalSignature")
    if ku.value.key_cert_sign or ku.value.crl_sign:
        raise fail(leaf, "leaf keyUsage must not allow keyCertSign/cRLSign")
    eku = _ext(leaf, x509.ExtendedKeyUsage)
    if eku is None:
        raise fail(leaf, "no extendedKeyUsage")
    usages = set(eku.value)
    for needed, name in (
        (ExtendedKeyUsageOID.SERVER_AUTH, "serverAuth"),
        (ExtendedKeyUsageOID.CLIENT_AUTH, "clientAuth"),
    ):
        if needed not in usages:
            raise fail(leaf, f"extendedKeyUsage lacks {name}")
    return leaf_spiffe_id(leaf)


@dataclass(frozen=True, slots=True)
class ValidatedSvid:
    """Proof that a chain validated at ``checked_at``: leaf first, root last."""

    spiffe_id: SpiffeId
    path: tuple[x509.Certificate, ...]
    checked_at: datetime

    @property
    def leaf(self) -> x509.Certificate:
        return self.path[0]

    @property
    def root(self) -> x509.Certificate:
        return self.path[-1]


def _build_path(
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    roots: Sequence[x509.Certificate],
) -> tuple[x509.Certificate, ...]:
    """Walk issuer names from the leaf to a root, verifying each signature on the way."""
    path = [leaf]
    pool = list(intermediates)
    while len(path) < MAX_PATH_CERTIFICATES:
        current = path[-1]
        errors: list[str] = []
        memoise = current is not leaf  # leaves are new every time; CA links recur
        for root in roots:
            if root.subject == current.issuer:
                try:
                    check_signed_by(current, root, memoise=memoise)
                except ValidationFailed as exc:
                    errors.append(str(exc))
                    continue
                return (*path, root)
        candidates = [c for c in pool if c.subject == current.issuer and c not in path]
        for candidate in candidates:
            check_signed_by(current, candidate, memoise=memoise)
            path.append(candidate)
            break
        else:
            detail = "; ".join(errors) if errors else f"issuer {current.issuer.rfc4514_string()}"
            raise fail(leaf, f"does not chain to a trusted root ({detail})")
    raise fail(leaf, f"path longer than {MAX_PATH_CERTIFICATES}")


def validate_svid(
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    roots: Sequence[x509.Certificate],
    now: datetime,
    *,
    expected_id: SpiffeId | None = None,
) -> ValidatedSvid:
    """Validate an X.509-SVID chain against trusted ``roots`` at time ``now``.

    Checks: path to a root with every signature valid; every certificate in
    its validity window; CA rules and pathLen for every signing certificate;
    URI name constraints; leaf rules (one SPIFFE URI SAN, cA=false, key usage,
    EKU serverAuth+clientAuth); optionally the exact expected SPIFFE ID.
    Raises ValidationFailed; returns a ValidatedSvid.
    """
    require_aware(now)
    if not roots:
        raise ValidationFailed("no trusted roots given")
    spiffe_id = check_leaf(leaf)
    if expected_id is not None and spiffe_id != expected_id:
        raise fail(leaf, f"is {spiffe_id}, expected {expected_id}")
    path = validate_path(leaf, intermediates, roots, now, spiffe_ids=[spiffe_id])
    return ValidatedSvid(spiffe_id=spiffe_id, path=path, checked_at=now)


def validate_path(
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    roots: Sequence[x509.Certificate],
    now: datetime,
    *,
    spiffe_ids: Sequence[SpiffeId] = (),
) -> tuple[x509.Certificate, ...]:
    """The chain part of validation, for any leaf (SVID or host certificate): a path
    from ``leaf`` to one of ``roots`` with every signature valid, every certificate
    valid at ``now``, CA rules and pathLen for every signing certificate, and URI name
    constraints applied to ``spiffe_ids``. Leaf rules are the caller's. Returns the
    path, leaf first, root last."""
    require_aware(now)
    if not roots:
        raise ValidationFailed("no trusted roots given")
    path = _build_path(leaf, intermediates, roots)
    for cert in path:
        check_validity(cert, now)
    for below, ca in enumerate(path[1:]):
        _checked_ca(ca, below)
        check_name_constraints(ca, spiffe_ids)
    return path


def chains_to(
    cert: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    roots: Sequence[x509.Certificate],
) -> bool:
    """True if signatures link ``cert`` (leaf or CA) to one of ``roots``. Only the
    chain is checked, not validity or usage: rotation asks "which root is this under?"."""
    if cert in roots:
        return True
    try:
        _build_path(cert, intermediates, roots)
    except ValidationFailed:
        return False
    return True
