"""SPIFFE bundles: the model, a strict parser and a canonical serializer.

Why this module exists: the SPIFFE bundle (a JWK Set, SPIFFE Trust Domain and
Bundle spec §4) is how trust crosses cluster and mesh boundaries, and a parser
that accepts garbage is a way to inject a root. Parsing is strict about
structure and reports the precise JSON location of every defect
(``keys[1].x5c[0]: ...``); it follows the spec's "MUST ignore" rules for
unknown key types and uses (kept verbatim so they round-trip). Every X.509
authority must be a CA, its JWK parameters must match its certificate, and a
self-issued authority's signature must verify, so tampered bytes are caught.
Pure: no I/O, no clock.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from trust_bundle.errors import InvalidBundle, InvalidIdentity
from trust_bundle.ids import parse_spiffe_id, validate_trust_domain

# X509-SVID §6.1: the JWK "use" for X.509 authorities.
X509_SVID_USE = "x509-svid"
# SPIRE's bundle endpoint default refresh hint (5 minutes).
DEFAULT_REFRESH_HINT = 300
# Trust Domain and Bundle §4.1.1: sequence numbers need at least 64 bits.
MAX_SEQUENCE = 2**64 - 1
# Refuse documents larger than this before parsing: 1 MiB holds thousands of roots.
MAX_DOCUMENT_BYTES = 1024 * 1024
# RFC 7518 §6.2.1.1: JWK "crv" names for the curves we can describe.
_CURVE_NAMES: dict[str, str] = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}


@dataclass(frozen=True, slots=True)
class SpiffeBundle:
    """The keys of one trust domain. ``other_keys`` are JWKs this package does not use
    (e.g. jwt-svid), kept as canonical JSON so they survive a round trip."""

    trust_domain: str
    x509_authorities: tuple[x509.Certificate, ...]
    sequence: int | None = None
    refresh_hint: int | None = None
    other_keys: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        try:
            validate_trust_domain(self.trust_domain)
        except InvalidIdentity as exc:
            raise InvalidBundle(str(exc)) from exc
        if self.sequence is not None and not 0 <= self.sequence <= MAX_SEQUENCE:
            raise InvalidBundle(f"spiffe_sequence {self.sequence} outside 0..2^64-1")
        if self.refresh_hint is not None and self.refresh_hint <= 0:
            raise InvalidBundle(f"spiffe_refresh_hint {self.refresh_hint} must be positive")
        if len(set(self.x509_authorities)) != len(self.x509_authorities):
            raise InvalidBundle("duplicate X.509 authority")

    def fingerprints(self) -> tuple[str, ...]:
        """SHA-256 of each authority's DER, hex, in bundle order."""
        return tuple(certificate_fingerprint(c) for c in self.x509_authorities)

    def authorities_pem(self) -> bytes:
        """The X.509 authorities as concatenated PEM (a CA file for ssl/openssl)."""
        return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in self.x509_authorities)


def certificate_fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 of the certificate DER, lowercase hex."""
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def _b64url(data: bytes) -> str:
    # RFC 7515 §2: base64url without padding.
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _int_bytes(value: int, length: int) -> bytes:
    return value.to_bytes(length, "big")


def key_parameters(cert: x509.Certificate) -> dict[str, str]:
    """RFC 7518 §6 public-key JWK parameters for the certificate's key."""
    key = cert.public_key()
    if isinstance(key, ec.EllipticCurvePublicKey):
        crv = _CURVE_NAMES.get(key.curve.name)
        if crv is None:
            raise InvalidBundle(f"curve {key.curve.name} has no JWK name")
        size = (key.curve.key_size + 7) // 8  # RFC 7518 §6.2.1.2: full-length coordinates
        numbers = key.public_numbers()
        return {
            "kty": "EC",
            "crv": crv,
            "x": _b64url(_int_bytes(numbers.x, size)),
            "y": _b64url(_int_bytes(numbers.y, size)),
        }
    if isinstance(key, rsa.RSAPublicKey):
        numbers_rsa = key.public_numbers()
        return {
            "kty": "RSA",
            "n": _b64url(_int_bytes(numbers_rsa.n, (numbers_rsa.n.bit_length() + 7) // 8)),
            "e": _b64url(_int_bytes(numbers_rsa.e, (numbers_rsa.e.bit_length() + 7) // 8)),
        }
    raise InvalidBundle(f"unsupported authority key type {type(key).__name__}")


def authority_jwk(cert: x509.Certificate) -> dict[str, Any]:
    """X509-SVID §6.1: use=x509-svid, no kid, x5c with exactly the one CA certificate."""
    jwk: dict[str, Any] = {"use": X509_SVID_USE, **key_parameters(cert)}
    # RFC 7517 §4.7: x5c holds standard (not URL-safe) base64 DER.
    jwk["x5c"] = [base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()]
    return jwk


def bundle_document(bundle: SpiffeBundle) -> dict[str, Any]:
    """The bundle as a JSON-ready dict (keys first, then sequence and refresh hint)."""
    doc: dict[str, Any] = {
        "keys": [authority_jwk(c) for c in bundle.x509_authorities]
        + [json.loads(k) for k in bundle.other_keys]
    }
    if bundle.sequence is not None:
        doc["spiffe_sequence"] = bundle.sequence
    if bundle.refresh_hint is not None:
        doc["spiffe_refresh_hint"] = bundle.refresh_hint
    return doc


def serialize_bundle(bundle: SpiffeBundle) -> bytes:
    """Canonical JSON bytes of ``bundle``; parse_bundle inverts it exactly."""
    return json.dumps(bundle_document(bundle), indent=2, sort_keys=False).encode() + b"\n"


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for name, value in pairs:
        if name in seen:
            raise InvalidBundle(f"duplicate JSON member {name!r}")
        seen[name] = value
    return seen


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _decode_json(data: bytes | str) -> Any:
    raw = data.encode() if isinstance(data, str) else data
    if len(raw) > MAX_DOCUMENT_BYTES:
        raise InvalidBundle(f"document larger than {MAX_DOCUMENT_BYTES} bytes")
    try:
        return json.loads(raw, object_pairs_hook=_reject_duplicates)
    except json.JSONDecodeError as exc:
        raise InvalidBundle(f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from exc
    except (UnicodeDecodeError, RecursionError) as exc:
        raise InvalidBundle(f"not JSON: {exc.__class__.__name__}") from exc


def _check_params(where: str, jwk: Mapping[str, Any], cert: x509.Certificate) -> None:
    expected = key_parameters(cert)
    for name, value in expected.items():
        if name in jwk and jwk[name] != value:
            raise InvalidBundle(f"{where}.{name}: does not match the x5c certificate's key")


def _parse_authority(where: str, jwk: Mapping[str, Any]) -> x509.Certificate | None:
    """One x509-svid JWK -> its CA certificate, or None when X509-SVID §6.2 says ignore."""
    if "kid" in jwk:
        raise InvalidBundle(f"{where}.kid: must not be set on x509-svid keys (X509-SVID §6.1)")
    x5c = jwk.get("x5c")
    if x5c is None or x5c == []:
        return None  # X509-SVID §6.2: entries without x5c MUST be ignored
    if not isinstance(x5c, list) or not all(isinstance(v, str) for v in x5c):
        raise InvalidBundle(f"{where}.x5c: must be an array of base64 strings")
    try:
        der = base64.b64decode(x5c[0], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidBundle(f"{where}.x5c[0]: not base64: {exc}") from exc
    try:
        cert = x509.load_der_x509_certificate(der)
        basic = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound as exc:
        raise InvalidBundle(f"{where}.x5c[0]: certificate has no basicConstraints") from exc
    except ValueError as exc:
        raise InvalidBundle(f"{where}.x5c[0]: not a DER certificate: {exc}") from exc
    if not basic.ca:
        raise InvalidBundle(f"{where}.x5c[0]: certificate is not a CA")
    if cert.subject == cert.issuer:
        try:
            cert.verify_directly_issued_by(cert)
        except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm) as exc:
            raise InvalidBundle(f"{where}.x5c[0]: self-signature does not verify") from exc
    _check_params(where, jwk, cert)
    return cert


def parse_bundle(
    trust_domain: str, data: bytes | str, *, require_x509: bool = True
) -> SpiffeBundle:
    """Parse a SPIFFE bundle document for ``trust_domain``; InvalidBundle on any defect."""
    doc = _decode_json(data)
    return bundle_from_document(trust_domain, doc, require_x509=require_x509)


def bundle_from_document(
    trust_domain: str, doc: Any, *, require_x509: bool = True, where: str = ""
) -> SpiffeBundle:
    """Like parse_bundle, from already-decoded JSON (used by the bundle map)."""
    prefix = f"{where}." if where else ""
    if not isinstance(doc, dict):
        raise InvalidBundle(f"{where or 'document'}: must be a JSON object")
    keys = doc.get("keys")
    if not isinstance(keys, list):
        raise InvalidBundle(f"{prefix}keys: required array is missing or not an array (§4.1.3)")
    sequence = doc.get("spiffe_sequence")
    if sequence is not None and not (_is_int(sequence) and 0 <= sequence <= MAX_SEQUENCE):
        raise InvalidBundle(f"{prefix}spiffe_sequence: must be an integer in 0..2^64-1")
    hint = doc.get("spiffe_refresh_hint")
    if hint is not None and not (_is_int(hint) and hint > 0):
        raise InvalidBundle(f"{prefix}spiffe_refresh_hint: must be a positive integer (seconds)")
    authorities: list[x509.Certificate] = []
    others: list[str] = []
    for index, jwk in enumerate(keys):
        at = f"{prefix}keys[{index}]"
        if not isinstance(jwk, dict):
            raise InvalidBundle(f"{at}: must be a JSON object")
        for member in ("use", "kty"):  # §4.2.1 and §4.2.2: both MUST be set
            if not isinstance(jwk.get(member), str):
                raise InvalidBundle(f"{at}.{member}: required string is missing")
        if jwk["use"] == X509_SVID_USE and jwk["kty"] in ("EC", "RSA"):
            cert = _parse_authority(at, jwk)
            if cert is not None:
                if cert in authorities:
                    raise InvalidBundle(f"{at}.x5c[0]: duplicate authority")
                authorities.append(cert)
        else:  # §4.2.1/§4.2.2: unknown type or use -> ignored here, kept verbatim
            others.append(json.dumps(jwk, sort_keys=True, separators=(",", ":")))
    if require_x509 and not authorities:
        raise InvalidBundle(f"{prefix}keys: no x509-svid authority")
    return SpiffeBundle(trust_domain, tuple(authorities), sequence, hint, tuple(others))


def serialize_bundle_map(bundles: Iterable[SpiffeBundle]) -> bytes:
    """``{"spiffe://<td>": <bundle document>, ...}`` for federated trust domains, sorted."""
    docs: dict[str, Any] = {}
    for bundle in sorted(bundles, key=lambda b: b.trust_domain):
        name = f"spiffe://{bundle.trust_domain}"
        if name in docs:
            raise InvalidBundle(f"two bundles for trust domain {bundle.trust_domain}")
        docs[name] = bundle_document(bundle)
    return json.dumps(docs, indent=2).encode() + b"\n"


def parse_bundle_map(data: bytes | str) -> dict[str, SpiffeBundle]:
    """Inverse of serialize_bundle_map: trust domain name -> bundle."""
    doc = _decode_json(data)
    if not isinstance(doc, dict):
        raise InvalidBundle("bundle map: must be a JSON object")
    result: dict[str, SpiffeBundle] = {}
    for name, value in doc.items():
        try:
            td_id = parse_spiffe_id(name)
        except InvalidIdentity as exc:
            raise InvalidBundle(f"{name!r}: not a trust domain ID: {exc}") from exc
        if td_id.path:
            raise InvalidBundle(f"{name!r}: trust domain ID must not have a path")
        result[td_id.trust_domain] = bundle_from_document(td_id.trust_domain, value, where=name)
    return result
