"""The registry's trust service: federation root, cluster CAs, join tokens, SVIDs, bundles.

Why this module exists: the REST API (cluster CAs, bundles, exports) and the
gRPC control plane (Join, SignCSR, the registry's own serving certificate) need
the same trust operations on the same store. This is the thin shell between
them and `trust_bundle` (all crypto lives there): it reads and writes
`CaMaterial`, `TrustDomain` and `JoinToken` records, keeps CA private keys
sealed by a `KeyProtector` at rest, and turns `trust_bundle`'s errors into
`federation.errors` once. Time is always a parameter. Two mixins keep it a few
hundred lines: `JoinTokens` (join_tokens.py) and `RotationSteps` (rotation_steps.py).

Several `meshfed serve` processes may share one store, so everything that
creates shared records (the root, the registry CA, trust domain records, join
token redemption) is a create-or-lose race resolved by the store's
compare-and-swap, never by a local lock.
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from federation.errors import (
    AlreadyExists,
    Conflict,
    NotFound,
    PermissionDenied,
    ValidationError,
)
from federation.model import CaMaterial, Cluster, TrustDomain
from federation.registry.join_tokens import JoinTokens
from federation.registry.join_tokens import digest as digest
from federation.registry.join_tokens import split_token as split_token
from federation.registry.rotation_steps import RotationSteps
from federation.registry.rotation_view import (
    NEXT_ROOT_CA,
    REGISTRY_CA,
    ROOT_CA,
    TrustFailure,
    pem_text,
    trust_domain_of,
)
from federation.registry.server_cert import issue_server_svid
from federation.store import Store
from trust_bundle import (
    CertificateAuthority,
    Entitlement,
    InvalidCSR,
    KeyProtector,
    NotEntitled,
    SpiffeBundle,
    SpiffeId,
    TrustError,
    agent_id,
    create_intermediate_ca,
    create_root_ca,
    gateway_id,
    issue_svid,
)
from trust_bundle.exports import istio_cacerts, linkerd_identity
from trust_bundle.ids import STORE_TRUST_DOMAIN
from trust_bundle.spiffe_bundle import (
    DEFAULT_REFRESH_HINT,
    bundle_document,
    certificate_fingerprint,
)
from trust_bundle.svid import DEFAULT_SVID_LIFETIME

# CaMaterial names that are not clusters; a cluster may not take one of these names.
RESERVED_NAMES = frozenset({ROOT_CA, NEXT_ROOT_CA, REGISTRY_CA})
DEFAULT_ROOT_TRUST_DOMAIN = "meshfed.local"
# Trust domains the registry issues for itself besides its root trust domain: the
# store CA's (`meshfed install --store etcd`), whose leaves etcd accepts as clients.
RESERVED_TRUST_DOMAINS = frozenset({STORE_TRUST_DOMAIN})
COMPONENTS = ("agent", "gateway")
EXPORT_FORMATS = ("istio", "linkerd")
# CAS retries for trust domain records: each retry means another replica wrote
# in between, so a handful is plenty.
CAS_ATTEMPTS = 8


class TrustService(JoinTokens, RotationSteps):
    """Trust operations over the store; CA keys are sealed by `protector` at rest."""

    def __init__(
        self,
        store: Store,
        protector: KeyProtector,
        *,
        root_trust_domain: str = DEFAULT_ROOT_TRUST_DOMAIN,
    ) -> None:
        self._store = store
        self._protector = protector
        self.root_trust_domain = root_trust_domain
        # Unsealed CAs by (name, certificate PEM): a new certificate is a new entry,
        # so a CA re-issued by another replica is never served stale.
        self._cache: dict[tuple[str, str], CertificateAuthority] = {}

    # -- CA material ------------------------------------------------------------

    def _material(self, name: str, kind: str, ca: CertificateAuthority) -> CaMaterial:
        try:
            sealed = self._protector.seal(ca.key).decode()
        except TrustError as exc:
            raise TrustFailure(f"cannot seal the {name} CA key: {exc}") from exc
        return CaMaterial(
            name=name,
            kind=kind,
            cert_pem=pem_text([ca.certificate]),
            sealed_key=sealed,
            not_after=ca.certificate.not_valid_after_utc,
            chain_pem=pem_text(ca.chain),
        )

    async def _load_ca(self, name: str) -> CertificateAuthority:
        material = (await self._store.cas.get(name)).record
        cached = self._cache.get((name, material.cert_pem))
        if cached is not None:
            return cached
        try:
            cert = x509.load_pem_x509_certificate(material.cert_pem.encode())
            chain = (
                tuple(x509.load_pem_x509_certificates(material.chain_pem.encode()))
                if material.chain_pem.strip()
                else ()
            )
            key = self._protector.unseal(material.sealed_key.encode())
        except (ValueError, TrustError) as exc:
            raise TrustFailure(f"CA material {name!r} is unusable: {exc}") from exc
        if cert.public_key() != key.public_key:
            raise TrustFailure(f"CA material {name!r}: key does not match certificate")
        is_root = material.kind == "root"
        ca = CertificateAuthority(
            certificate=cert,
            key=key,
            chain=chain,
            trust_domain=None if is_root else trust_domain_of(cert),
            cluster=None if is_root or name == REGISTRY_CA else name,
        )
        self._cache[(name, material.cert_pem)] = ca
        return ca

    async def _create_once(
        self, name: str, kind: str, make: Callable[[], CertificateAuthority]
    ) -> None:
        """Create CA `name` unless present; losing a race to another replica is fine."""
        if await self._store.cas.find(name) is not None:
            return
        try:
            ca = make()
        except TrustError as exc:
            raise TrustFailure(f"cannot create the {name} CA: {exc}") from exc
        # Losing to another `meshfed serve` is fine: theirs is the one.
        with contextlib.suppress(AlreadyExists):
            await self._store.cas.create(self._material(name, kind, ca))

    async def _roots(self) -> list[x509.Certificate]:
        """Every trusted root: the current one, plus the next one during a rotation."""
        roots = [(await self._load_ca(ROOT_CA)).certificate]
        if (await self._store.cas.find(NEXT_ROOT_CA)) is not None:
            roots.append((await self._load_ca(NEXT_ROOT_CA)).certificate)
        return roots

    async def _ensure_trust_domain(self, name: str) -> None:
        """Create the TrustDomain record, or add missing roots to it (sequence + 1)."""
        roots = tuple(pem_text([c]) for c in await self._roots())
        for _ in range(CAS_ATTEMPTS):
            current = await self._store.trust_domains.find(name)
            try:
                if current is None:
                    signing = certificate_fingerprint((await self._signing_ca()).certificate)
                    await self._store.trust_domains.create(
                        TrustDomain(name, roots, 1, DEFAULT_REFRESH_HINT, signing)
                    )
                    return
                held = current.record
                missing = tuple(r for r in roots if r not in held.roots_pem)
                if not missing:
                    return
                updated = dataclasses.replace(
                    held, roots_pem=held.roots_pem + missing, sequence=held.sequence + 1
                )
                await self._store.trust_domains.update(updated, current.revision)
                return
            except (AlreadyExists, Conflict):
                continue
        raise Conflict(f"trustdomains/{name}", -1, None)

    # -- the interface the API and the control plane use -------------------------

    async def ensure_root(self, now: datetime) -> None:
        """First start: the federation root, the registry CA and the root trust domain."""
        await self._create_once(ROOT_CA, "root", lambda: create_root_ca(now))
        root = await self._load_ca(ROOT_CA)
        await self._create_once(
            REGISTRY_CA,
            "intermediate",
            lambda: create_intermediate_ca(root, REGISTRY_CA, self.root_trust_domain, now),
        )
        await self._ensure_trust_domain(self.root_trust_domain)

    def check_cluster(self, cluster: Cluster) -> None:
        """Refuse cluster names and trust domains the registry keeps for itself."""
        if cluster.name in RESERVED_NAMES:
            raise ValidationError("name", f"{cluster.name!r} is reserved by the registry")
        if cluster.trust_domain == self.root_trust_domain:
            raise ValidationError(
                "trust_domain", f"{cluster.trust_domain!r} is the registry's own trust domain"
            )
        if cluster.trust_domain in RESERVED_TRUST_DOMAINS:
            raise ValidationError(
                "trust_domain", f"{cluster.trust_domain!r} is reserved by the registry"
            )

    async def issue_cluster_ca(self, cluster: Cluster, now: datetime) -> None:
        """Issue (or re-issue) the intermediate CA of `cluster`'s trust domain, under the
        signing root: the next root once a rotation is active, else the current one."""
        self.check_cluster(cluster)
        root = await self._signing_ca()
        try:
            ca = create_intermediate_ca(root, cluster.name, cluster.trust_domain, now)
        except TrustError as exc:
            raise TrustFailure(f"cannot issue the CA of cluster {cluster.name}: {exc}") from exc
        await self._store.cas.put(self._material(cluster.name, "intermediate", ca))
        await self._ensure_trust_domain(cluster.trust_domain)

    async def remove_cluster_ca(self, cluster: str) -> None:
        """Forget a deleted cluster's CA (its SVIDs age out within their lifetime)."""
        if cluster in RESERVED_NAMES:
            return
        with contextlib.suppress(NotFound):
            await self._store.cas.delete(cluster)

    async def sign_component_csr(
        self,
        cluster: str,
        component: str,
        csr_pem: bytes,
        now: datetime,
        lifetime: timedelta | None = None,
    ) -> tuple[bytes, bytes]:
        """An SVID for `cluster`'s agent or gateway: (leaf + intermediate PEM, bundle PEM)."""
        if component not in COMPONENTS:
            raise ValidationError("component", f"{component!r} is not one of agent, gateway")
        record = (await self._store.clusters.get(cluster)).record
        make_id = agent_id if component == "agent" else gateway_id
        expected: SpiffeId = make_id(record.trust_domain, cluster)
        issuer = await self._load_ca(cluster)
        try:
            svid = issue_svid(
                csr_pem,
                issuer,
                Entitlement(ids=frozenset({expected})),
                now,
                lifetime=lifetime or DEFAULT_SVID_LIFETIME,
            )
        except NotEntitled as exc:
            message = f"{cluster}'s {component} may only hold {expected}: {exc}"
            raise PermissionDenied(message) from exc
        except InvalidCSR as exc:
            raise ValidationError("csr", str(exc)) from exc
        except TrustError as exc:
            raise TrustFailure(f"cannot sign the {component} CSR of {cluster}: {exc}") from exc
        return svid.chain_pem(), await self.bundle_pem()

    async def server_credentials(
        self, name: str, dns_names: list[str], ip_addresses: list[str], now: datetime
    ) -> tuple[bytes, bytes, bytes]:
        """(chain PEM, key PEM, bundle PEM) for the registry's own TLS servers."""
        for i, address in enumerate(ip_addresses):
            try:
                ipaddress.ip_address(address)
            except ValueError:
                raise ValidationError(f"ip_addresses[{i}]", f"{address!r} is not an IP") from None
        issuer = await self._load_ca(REGISTRY_CA)
        spiffe_id = SpiffeId(self.root_trust_domain, "/meshfed/registry")
        try:
            creds = issue_server_svid(issuer, spiffe_id, dns_names, ip_addresses, now)
        except (TrustError, ValueError) as exc:
            raise TrustFailure(f"cannot issue the registry's certificate: {exc}") from exc
        return creds.chain_pem, creds.key_pem(), await self.bundle_pem()

    async def server_issuer_pem(self) -> bytes:
        """The CA certificate that issues the registry's own serving certificates.

        The control plane compares it with its certificate's issuer: after a root
        rotation's activate re-issues this CA, the server re-issues its certificate.
        """
        issuer = await self._load_ca(REGISTRY_CA)
        return issuer.certificate.public_bytes(serialization.Encoding.PEM)

    async def bundle_pem(self) -> bytes:
        """Every trusted root as PEM: what verifies any SVID in the federation."""
        return pem_text(await self._roots()).encode()

    async def trust_domains(self) -> list[TrustDomain]:
        return [v.record for v in await self._store.trust_domains.list()]

    async def spiffe_bundle(self, trust_domain: str) -> dict[str, Any]:
        """The SPIFFE bundle (JWKS) of `trust_domain`; NotFound if unknown."""
        record = (await self._store.trust_domains.get(trust_domain)).record
        roots = tuple(
            c for pem in record.roots_pem for c in x509.load_pem_x509_certificates(pem.encode())
        )
        bundle = SpiffeBundle(
            trust_domain=record.name,
            x509_authorities=roots,
            sequence=record.sequence,
            refresh_hint=record.refresh_hint_seconds or None,
        )
        return bundle_document(bundle)

    async def cluster_ca_certificate(self, cluster: str) -> bytes:
        """The cluster intermediate's certificate PEM (public)."""
        return (await self._store.cas.get(cluster)).record.cert_pem.encode()

    async def export_cluster_ca(self, cluster: str, fmt: str) -> dict[str, str]:
        """Mesh install files for `cluster` (contain its private key: admins only)."""
        if fmt not in EXPORT_FORMATS:
            raise ValidationError("format", f"{fmt!r} is not one of {', '.join(EXPORT_FORMATS)}")
        if cluster in RESERVED_NAMES:
            raise NotFound(f"clusters/{cluster}")
        ca = await self._load_ca(cluster)
        roots = await self._roots()
        try:
            files = istio_cacerts(ca, roots) if fmt == "istio" else linkerd_identity(ca, roots)
        except TrustError as exc:
            raise TrustFailure(f"cannot export the CA of {cluster}: {exc}") from exc
        return {name: data.decode() for name, data in files.as_dict().items()}
