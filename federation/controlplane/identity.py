"""Who is calling, and may it do this? Pure functions over the verified peer certificate.

Why this module exists: every control-plane call is authorized by the caller's
SPIFFE ID alone (issue 4), so the rules are stated once, here, as data in and a
decision out, and tested without a network.

gRPC has already verified the client certificate chain against the federation
roots when a call arrives; what arrives here is the leaf (`x509_pem_cert` of
the auth context). A caller is a meshfed component when the leaf carries
exactly one URI SAN of the shape spiffe://<td>/meshfed/<agent|gateway>/<cluster>
(trust_bundle.ids). Because name constraints only pin a cluster intermediate to
its trust domain, and two clusters may share a trust domain (or a cluster's CA
key may be handed to its mesh as Istio `cacerts`), the server also checks that
the leaf's issuer is the named cluster's intermediate and that the trust domain
is the cluster's (`check_issuer`). The issuer is recognised by name: trust_bundle
names a cluster intermediate `OU=<cluster>`, and TLS has already verified that
an intermediate with exactly that subject, signed by a federation root, signed
the leaf; holding cluster A's CA key does not let anyone mint a leaf whose chain
verifies through B's intermediate. Checking the name rather than one particular
certificate keeps SVIDs valid across a re-issue of the cluster's CA, so its
agents can still renew.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.x509.oid import NameOID

from federation.errors import InvalidToken, PermissionDenied
from trust_bundle import SpiffeId, TrustError, parse_spiffe_id

AGENT = "agent"
GATEWAY = "gateway"
COMPONENTS = (AGENT, GATEWAY)


class Unauthenticated(InvalidToken):
    """No usable client identity (translated to UNAUTHENTICATED)."""


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated meshfed component: `component` of `cluster` in `trust_domain`."""

    spiffe_id: SpiffeId
    component: str
    cluster: str
    certificate: x509.Certificate

    @property
    def trust_domain(self) -> str:
        return self.spiffe_id.trust_domain

    def __str__(self) -> str:
        return str(self.spiffe_id)


def component_of(spiffe_id: SpiffeId) -> tuple[str, str]:
    """(component, cluster) of spiffe://<td>/meshfed/<component>/<cluster>; AuthError otherwise."""
    parts = spiffe_id.path.split("/")
    # "/meshfed/agent/east" -> ["", "meshfed", "agent", "east"]
    if len(parts) != 4 or parts[1] != "meshfed" or parts[2] not in COMPONENTS:
        raise PermissionDenied(f"{spiffe_id} is not a meshfed agent or gateway identity")
    return parts[2], parts[3]


def spiffe_id_of(cert: x509.Certificate) -> SpiffeId:
    """The one SPIFFE ID in the certificate's URI SANs (X509-SVID section 2)."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        raise Unauthenticated("client certificate has no subjectAltName") from None
    uris = san.value.get_values_for_type(x509.UniformResourceIdentifier)
    if len(uris) != 1:
        raise Unauthenticated(f"client certificate must carry one URI SAN, has {len(uris)}")
    try:
        return parse_spiffe_id(uris[0])
    except TrustError as exc:
        raise Unauthenticated(f"client certificate URI SAN is not a SPIFFE ID: {exc}") from None


def caller_from_auth_context(auth: Mapping[str, Sequence[bytes]]) -> Caller:
    """The caller named by a gRPC auth context (`ServicerContext.auth_context()`)."""
    if auth.get("transport_security_type") != [b"ssl"]:
        raise Unauthenticated("the control plane is reachable over TLS only")
    pems = auth.get("x509_pem_cert")
    if not pems:
        raise Unauthenticated("a client certificate is required")
    try:
        cert = x509.load_pem_x509_certificate(pems[0])
    except ValueError:
        raise Unauthenticated("unparsable client certificate") from None
    spiffe_id = spiffe_id_of(cert)
    component, cluster = component_of(spiffe_id)
    return Caller(spiffe_id, component, cluster, cert)


def check_issuer(caller: Caller, cluster_trust_domain: str) -> None:
    """The caller's certificate must come from its own cluster's CA, in its trust domain."""
    if caller.trust_domain != cluster_trust_domain:
        raise PermissionDenied(
            f"{caller} is outside cluster {caller.cluster}'s trust domain {cluster_trust_domain}"
        )
    units = caller.certificate.issuer.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
    if [u.value for u in units] != [caller.cluster]:
        raise PermissionDenied(
            f"{caller} was not issued by cluster {caller.cluster}'s certificate authority"
        )


def require(caller: Caller, cluster: str, components: Collection[str] = COMPONENTS) -> None:
    """`caller` must be one of `components` of `cluster`; PermissionDenied otherwise."""
    if caller.cluster != cluster or caller.component not in components:
        allowed = " or ".join(components)
        raise PermissionDenied(f"{caller} may not act for cluster {cluster} (needs its {allowed})")


def require_own_identity(caller: Caller, requested: SpiffeId) -> None:
    """SignCSR renews the caller's own SVID only."""
    if requested != caller.spiffe_id:
        raise PermissionDenied(f"{caller} may renew only its own identity, not {requested}")
