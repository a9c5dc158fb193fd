"""TLS leaf certificates that name hosts: serving and client certificates.

Why this module exists: some peers check host names, not (only) SPIFFE IDs. gRPC
and HTTPS clients check the registry's control plane certificate against the DNS
name they dialled; etcd members and their clients (the store of an HA registry)
speak plain TLS with DNS/IP subjectAltNames and extended key usages. One builder
makes every leaf in this package (SVIDs too: ``svid.build_svid_certificate`` is
this builder with the SVID profile), so the extensions a leaf carries are decided
in one place. As everywhere in trust_bundle, build, sign and validate are separate
steps and ``issue_leaf`` never returns a certificate that failed re-validation.

A ``LeafProfile`` says what a leaf must be: its common name, at most one SPIFFE ID
(URI SAN), its DNS and IP SANs and whether it may serve, authenticate as a client,
or both. ``validate_leaf`` checks a certificate against a profile exactly (no SAN
more or less, exactly these usages), which is also how a caller decides whether a
certificate it holds still fits (a changed host name means a new certificate).
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from trust_bundle.ca import BACKDATE, ORGANIZATION, CertificateAuthority, sign_certificate
from trust_bundle.errors import SigningFailed, ValidationFailed
from trust_bundle.exports import pem
from trust_bundle.ids import SpiffeId
from trust_bundle.keys import KeyHolder, PublicKey, generate_key
from trust_bundle.validate import (
    check_extensions_understood,
    check_key_supported,
    fail,
    require_aware,
    validate_path,
    validate_svid,
)


@dataclass(frozen=True, slots=True)
class LeafProfile:
    """What a leaf certificate says about its holder."""

    common_name: str | None = None
    spiffe_id: SpiffeId | None = None
    dns_names: tuple[str, ...] = ()
    ip_addresses: tuple[str, ...] = ()
    server_auth: bool = True
    client_auth: bool = True

    def __post_init__(self) -> None:
        if not (self.server_auth or self.client_auth):
            raise SigningFailed("a leaf must allow serverAuth, clientAuth or both")
        # Normalise: duplicates dropped, order kept (the SAN order is the caller's).
        object.__setattr__(self, "dns_names", tuple(dict.fromkeys(self.dns_names)))
        object.__setattr__(self, "ip_addresses", tuple(dict.fromkeys(self.ip_addresses)))

    @property
    def usages(self) -> tuple[x509.ObjectIdentifier, ...]:
        return (
            *((ExtendedKeyUsageOID.SERVER_AUTH,) if self.server_auth else ()),
            *((ExtendedKeyUsageOID.CLIENT_AUTH,) if self.client_auth else ()),
        )

    def subject_alt_names(self) -> list[x509.GeneralName]:
        names: list[x509.GeneralName] = []
        if self.spiffe_id is not None:
            names.append(x509.UniformResourceIdentifier(str(self.spiffe_id)))
        names += [x509.DNSName(n) for n in self.dns_names]
        try:
            names += [x509.IPAddress(ipaddress.ip_address(a)) for a in self.ip_addresses]
        except ValueError as exc:
            raise SigningFailed(f"not an IP address: {exc}") from exc
        return names


@dataclass(frozen=True, slots=True)
class TlsCredentials:
    """A validated leaf, its key, the intermediates to send with it, and its root."""

    certificate: x509.Certificate
    key: KeyHolder
    intermediates: tuple[x509.Certificate, ...]
    root: x509.Certificate

    def __repr__(self) -> str:
        return f"TlsCredentials({self.certificate.subject.rfc4514_string()}, key=<redacted>)"

    @property
    def chain_pem(self) -> bytes:
        """Leaf then intermediates, PEM: what a TLS server or client presents."""
        return pem((self.certificate, *self.intermediates))

    @property
    def roots_pem(self) -> bytes:
        return pem((self.root,))

    def key_pem(self) -> bytes:
        """The key as plain PKCS#8 PEM (for a TLS library): write 0600, never log."""
        return self.key.unencrypted_pkcs8_pem()


# X509-SVID §4.1 / RFC 5280 §4.2.1.9: leaves set cA=false.
LEAF_BASIC_CONSTRAINTS = x509.BasicConstraints(ca=False, path_length=None)
# X509-SVID §4.3: leaves set digitalSignature; keyUsage is critical. ECDSA keys never
# encipher, so nothing else (RFC 5480 section 3).
LEAF_KEY_USAGE = x509.KeyUsage(
    digital_signature=True,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=False,
    crl_sign=False,
    encipher_only=False,
    decipher_only=False,
)
# How many issuers' derived fields issuer_fields keeps: a registry signs with one
# intermediate at a time, two across a rotation.
ISSUER_FIELDS_CACHE_SIZE = 64


@dataclass(frozen=True, slots=True)
class IssuerFields:
    """What every leaf copies from its issuer's certificate."""

    subject: x509.Name
    authority_key_identifier: x509.AuthorityKeyIdentifier
    not_valid_after: datetime


@functools.lru_cache(maxsize=ISSUER_FIELDS_CACHE_SIZE)
def issuer_fields(issuer_certificate: x509.Certificate) -> IssuerFields:
    """The issuer's subject, the AKI pointing at its SKI and its notAfter, derived once
    per issuer certificate. Keyed by the certificate (x509.Certificate equality and hash
    are its DER), so a re-issued CA with the same name but a new key is a new entry."""
    ski = issuer_certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    return IssuerFields(
        subject=issuer_certificate.subject,
        authority_key_identifier=x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
            ski.value
        ),
        not_valid_after=issuer_certificate.not_valid_after_utc,
    )


@functools.lru_cache(maxsize=16)
def _subject_name(common_name: str | None) -> x509.Name:
    """O=meshfed, plus CN=``common_name`` if given (x509.Name is immutable: shared)."""
    subject = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION)]
    if common_name:
        subject.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(subject)


def build_leaf_certificate(
    profile: LeafProfile,
    public_key: PublicKey,
    issuer: CertificateAuthority,
    now: datetime,
    lifetime: timedelta,
) -> x509.CertificateBuilder:
    """The build step: a leaf for ``public_key`` as ``profile`` says, never outliving
    its issuer. A URI name constraint of the issuer does not restrict DNS or IP names
    (RFC 5280 section 4.2.1.10), so a cluster or store CA may sign host names."""
    require_aware(now)
    if lifetime <= timedelta(0):
        raise SigningFailed("certificate lifetime must be positive")
    names = profile.subject_alt_names()
    if not names:
        raise SigningFailed("a leaf needs at least one subjectAltName")
    fields = issuer_fields(issuer.certificate)
    return (
        x509.CertificateBuilder()
        .subject_name(_subject_name(profile.common_name))
        .issuer_name(fields.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(min(now + lifetime, fields.not_valid_after))
        .add_extension(LEAF_BASIC_CONSTRAINTS, True)
        .add_extension(LEAF_KEY_USAGE, True)
        .add_extension(x509.ExtendedKeyUsage(list(profile.usages)), False)
        .add_extension(x509.SubjectAlternativeName(names), False)
        # RFC 5280 §4.2.1.1 (AKI required) and §4.2.1.2 (SKI SHOULD in end-entity certs).
        .add_extension(fields.authority_key_identifier, False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), False)
    )


def _ext_value(cert: x509.Certificate, kind: type[x509.ExtensionType]) -> x509.ExtensionType:
    try:
        return cert.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        raise fail(cert, f"no {kind.__name__}") from None


def check_leaf_profile(cert: x509.Certificate, profile: LeafProfile) -> None:
    """The leaf rules: cA=false, digitalSignature only, exactly the profile's usages,
    subjectAltNames and common name."""
    check_extensions_understood(cert)
    check_key_supported(cert)
    bc = _ext_value(cert, x509.BasicConstraints)
    if not isinstance(bc, x509.BasicConstraints) or bc.ca:
        raise fail(cert, "leaf must carry basicConstraints cA=false")
    ku = _ext_value(cert, x509.KeyUsage)
    if not isinstance(ku, x509.KeyUsage) or not ku.digital_signature:
        raise fail(cert, "keyUsage lacks digitalSignature")
    if ku.key_cert_sign or ku.crl_sign:
        raise fail(cert, "leaf keyUsage must not allow keyCertSign/cRLSign")
    eku = _ext_value(cert, x509.ExtendedKeyUsage)
    if not isinstance(eku, x509.ExtendedKeyUsage) or set(eku) != set(profile.usages):
        raise fail(cert, f"extendedKeyUsage is not exactly {_usage_names(profile)}")
    san = _ext_value(cert, x509.SubjectAlternativeName)
    if not isinstance(san, x509.SubjectAlternativeName) or set(san) != set(
        profile.subject_alt_names()
    ):
        raise fail(cert, "subjectAltNames differ from the requested ones")
    cns = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    if cns != ([profile.common_name] if profile.common_name else []):
        raise fail(cert, f"common name is not {profile.common_name!r}")


def _usage_names(profile: LeafProfile) -> str:
    names = {
        ExtendedKeyUsageOID.SERVER_AUTH: "serverAuth",
        ExtendedKeyUsageOID.CLIENT_AUTH: "clientAuth",
    }
    return "+".join(names[u] for u in profile.usages)


def validate_leaf(
    cert: x509.Certificate,
    profile: LeafProfile,
    intermediates: Sequence[x509.Certificate],
    roots: Sequence[x509.Certificate],
    now: datetime,
    *,
    public_key: PublicKey | None = None,
) -> tuple[x509.Certificate, ...]:
    """The validate step: ``cert`` is exactly what ``profile`` asks for, chains to one of
    ``roots`` through ``intermediates`` (every link, validity window, CA rule and URI
    name constraint checked) and, if given, carries ``public_key``. Returns the path."""
    check_leaf_profile(cert, profile)
    ids = [profile.spiffe_id] if profile.spiffe_id is not None else []
    path = validate_path(cert, intermediates, roots, now, spiffe_ids=ids)
    if profile.spiffe_id is not None and profile.server_auth and profile.client_auth:
        # A leaf with a SPIFFE ID and both usages is an X.509-SVID: hold it to those rules too.
        validate_svid(cert, intermediates, roots, now, expected_id=profile.spiffe_id)
    if public_key is not None and cert.public_key() != public_key:
        raise ValidationFailed("issued certificate does not carry the requested public key")
    return path


def issue_leaf(
    issuer: CertificateAuthority,
    profile: LeafProfile,
    now: datetime,
    lifetime: timedelta,
    *,
    key: KeyHolder | None = None,
) -> TlsCredentials:
    """Shell: generate (or take) a key, build, sign with ``issuer``, re-validate against
    the issuer's root; the credentials carry the chain to send (issuer and above)."""
    key = key or generate_key()
    cert = sign_certificate(
        build_leaf_certificate(profile, key.public_key, issuer, now, lifetime), issuer.key
    )
    intermediates = (issuer.certificate, *issuer.chain[:-1]) if issuer.chain else ()
    validate_leaf(cert, profile, intermediates, (issuer.root,), now, public_key=key.public_key)
    return TlsCredentials(certificate=cert, key=key, intermediates=intermediates, root=issuer.root)


def issue_server_svid(
    issuer: CertificateAuthority,
    spiffe_id: SpiffeId,
    dns_names: Sequence[str],
    ip_addresses: Sequence[str],
    now: datetime,
    lifetime: timedelta,
) -> TlsCredentials:
    """A serving X.509-SVID that also names hosts (the registry's control plane)."""
    profile = LeafProfile(
        spiffe_id=spiffe_id, dns_names=tuple(dns_names), ip_addresses=tuple(ip_addresses)
    )
    return issue_leaf(issuer, profile, now, lifetime)
