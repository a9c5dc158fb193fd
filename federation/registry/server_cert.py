"""The registry's own TLS server certificate: an X.509-SVID that also names hosts.

Why this module exists: gRPC and HTTPS clients check the server's host name
against DNS/IP subjectAltNames, so the registry's certificate must carry them
next to its SPIFFE ID (`spiffe://<root td>/meshfed/registry`). trust_bundle's
`issue_svid` issues from a CSR with the URI SAN only, so this module builds the
one extra shape with trust_bundle's building blocks (key generation, signing,
the CA's SKI) and re-validates the result with `trust_bundle.validate_svid`
before returning it. A name constraint of type URI does not restrict DNS or IP
names (RFC 5280 section 4.2.1.10), so the registry intermediate's constraint
still holds.

TODO(lead): move `issue_server_svid` into trust_bundle (svid.py) when its owner
can take it; the registry would then call it unchanged.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from trust_bundle import CertificateAuthority, KeyHolder, SpiffeId, generate_key, validate_svid
from trust_bundle.ca import BACKDATE, ORGANIZATION, sign_certificate

# Server certificates are renewed by restarting or re-asking; a week is the
# lifetime cert-manager's docs use as a short-lived serving certificate example,
# short enough that a leaked key ages out, long enough to survive a weekend.
SERVER_LIFETIME = timedelta(days=7)


@dataclass(frozen=True, slots=True)
class ServerCredentials:
    """A server certificate chain (leaf first), its key, and the roots that verify it."""

    chain_pem: bytes
    key: KeyHolder
    roots_pem: bytes

    def __repr__(self) -> str:
        return "ServerCredentials(<chain>, key=<redacted>)"

    def key_pem(self) -> bytes:
        return self.key.unencrypted_pkcs8_pem()


def _subject_alt_names(
    spiffe_id: SpiffeId, dns_names: list[str], ip_addresses: list[str]
) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(str(spiffe_id))]
    names += [x509.DNSName(n) for n in dict.fromkeys(dns_names)]
    names += [x509.IPAddress(ipaddress.ip_address(a)) for a in dict.fromkeys(ip_addresses)]
    return x509.SubjectAlternativeName(names)


def issue_server_svid(
    issuer: CertificateAuthority,
    spiffe_id: SpiffeId,
    dns_names: list[str],
    ip_addresses: list[str],
    now: datetime,
    *,
    common_name: str = "",
    lifetime: timedelta = SERVER_LIFETIME,
) -> ServerCredentials:
    """Generate a key and a serving SVID for it, signed by `issuer`, validated.

    `common_name` only labels the certificate for people reading it; clients
    check the SANs.
    """
    key = generate_key()
    subject = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION)]
    if common_name:
        subject.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    ski = issuer.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name(subject))
        .issuer_name(issuer.certificate.subject)
        .public_key(key.public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(min(now + lifetime, issuer.certificate.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            False,
        )
        .add_extension(_subject_alt_names(spiffe_id, dns_names, ip_addresses), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski.value), False
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key), False)
    )
    cert = sign_certificate(builder, issuer.key)
    intermediates = (issuer.certificate, *issuer.chain[:-1])
    validate_svid(cert, intermediates, (issuer.root,), now, expected_id=spiffe_id)
    chain = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in (cert, *intermediates))
    roots = issuer.root.public_bytes(serialization.Encoding.PEM)
    return ServerCredentials(chain_pem=chain, key=key, roots_pem=roots)
