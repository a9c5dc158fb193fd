"""The registry's trust service: federation root, cluster CAs, join tokens, SVIDs, bundles.

Why this module exists: the REST API (cluster CAs, bundles, exports) and the
gRPC control plane (Join, SignCSR, the registry's own serving certificate) need
the same trust operations on the same store. This is the thin shell between
them and `trust_bundle` (all crypto lives there): it reads and writes
`CaMaterial`, `TrustDomain` and `JoinToken` records, keeps CA private keys
sealed by a `KeyProtector` at rest, and turns `trust_bundle`'s errors into
`federation.errors` once. Time is always a parameter.

Several `meshfed serve` processes may share one store, so everything that
creates shared records (the root, the registry CA, trust domain records, join
token redemption) is a create-or-lose race resolved by the store's
compare-and-swap, never by a local lock.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import ipaddress
import secrets
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from federation.errors import (
    AlreadyExists,
    Conflict,
    InvalidToken,
    NotFound,
    PermissionDenied,
    ValidationError,
)
from federation.model import CaMaterial, Cluster, JoinToken, RootRotation, TrustDomain
from federation.registry import audit
from federation.registry.rotation_view import (
    NEXT_ROOT_CA,
    REGISTRY_CA,
    RETIRE_WAIT,
    ROOT_CA,
    ROTATION_ACTIONS,
    ROTATION_RECORD,
    RotationBlocked,
    RotationResult,
    RotationSnapshot,
    RotationStatus,
    TrustFailure,
    ca_certificate,
    ca_chain,
    human_duration,
    root_fingerprints,
    status_of,
    trust_domain_of,
)
from federation.registry.server_cert import issue_server_svid
from federation.store import Store
from federation.store.backend import ABSENT, Delete, Op, Put
from federation.store.typed import encode, storage_key
from trust_bundle import (
    CertificateAuthority,
    Entitlement,
    InvalidCSR,
    KeyProtector,
    NotEntitled,
    RotationRefused,
    SpiffeBundle,
    SpiffeId,
    TrustError,
    agent_id,
    create_intermediate_ca,
    create_root_ca,
    gateway_id,
    issue_svid,
    rotation,
)
from trust_bundle.exports import istio_cacerts, linkerd_identity
from trust_bundle.spiffe_bundle import (
    DEFAULT_REFRESH_HINT,
    bundle_document,
    certificate_fingerprint,
)
from trust_bundle.svid import DEFAULT_SVID_LIFETIME
from trust_bundle.validate import chains_to

# CaMaterial names that are not clusters; a cluster may not take one of these names.
RESERVED_NAMES = frozenset({ROOT_CA, NEXT_ROOT_CA, REGISTRY_CA})
DEFAULT_ROOT_TRUST_DOMAIN = "meshfed.local"
COMPONENTS = ("agent", "gateway")
EXPORT_FORMATS = ("istio", "linkerd")
# Join token shape "<id>.<secret>": an 8-byte id (16 hex chars, within the model's
# [a-z0-9]{6,32}) and a 32-byte secret, 256 bits as RFC 4086 section 8 suggests
# for keys; kubeadm's bootstrap tokens use the same "<id>.<secret>" split.
TOKEN_ID_BYTES = 8
TOKEN_SECRET_BYTES = 32
# CAS retries for trust domain records: each retry means another replica wrote
# in between, so a handful is plenty.
CAS_ATTEMPTS = 8


def digest(secret: str) -> str:
    """SHA-256 hex of a token secret: what the store keeps instead of the secret."""
    return hashlib.sha256(secret.encode()).hexdigest()


def split_token(token: str) -> tuple[str, str]:
    """`<id>.<secret>` -> (id, secret); InvalidToken if malformed."""
    token_id, sep, secret = token.partition(".")
    if not sep or not token_id or not secret:
        raise InvalidToken("malformed token (expected <id>.<secret>)")
    return token_id, secret


def _pem(certs: list[x509.Certificate] | tuple[x509.Certificate, ...]) -> str:
    return "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in certs)


class TrustService:
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
            cert_pem=_pem([ca.certificate]),
            sealed_key=sealed,
            not_after=ca.certificate.not_valid_after_utc,
            chain_pem=_pem(ca.chain),
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
        roots = tuple(_pem([c]) for c in await self._roots())
        for _ in range(CAS_ATTEMPTS):
            current = await self._store.trust_domains.find(name)
            try:
                if current is None:
                    await self._store.trust_domains.create(
                        TrustDomain(name, roots, 1, DEFAULT_REFRESH_HINT)
                    )
                    return
                held = current.record
                missing = tuple(r for r in roots if r not in held.roots_pem)
                if not missing:
                    return
                updated = TrustDomain(
                    name, held.roots_pem + missing, held.sequence + 1, held.refresh_hint_seconds
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

    async def create_join_token(self, cluster: str, ttl: timedelta, now: datetime) -> str:
        """A single-use `<id>.<secret>` for `cluster`; only sha256(secret) is stored."""
        await self._store.clusters.get(cluster)
        if ttl <= timedelta(0):
            raise ValidationError("ttl", "must be positive")
        secret = secrets.token_urlsafe(TOKEN_SECRET_BYTES)
        token_id = secrets.token_hex(TOKEN_ID_BYTES)
        await self._store.join_tokens.create(
            JoinToken(id=token_id, cluster=cluster, secret_sha256=digest(secret), expires=now + ttl)
        )
        return f"{token_id}.{secret}"

    async def redeem_join_token(self, token: str, now: datetime) -> str:
        """Spend a join token once; returns its cluster. InvalidToken for any refusal."""
        token_id, secret = split_token(token)
        try:
            held = await self._store.join_tokens.get(token_id)
        except NotFound:
            raise InvalidToken("unknown join token") from None
        except ValidationError:
            raise InvalidToken("malformed join token") from None
        record = held.record
        if not hmac.compare_digest(record.secret_sha256, digest(secret)):
            raise InvalidToken("unknown join token")
        if record.used:
            raise InvalidToken("join token already used")
        if now >= record.expires:
            raise InvalidToken("join token expired")
        spent = JoinToken(record.id, record.cluster, record.secret_sha256, record.expires, True)
        try:
            await self._store.join_tokens.update(spent, held.revision)
        except (Conflict, NotFound):
            raise InvalidToken("join token already used") from None
        return record.cluster

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
        return _pem(await self._roots()).encode()

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

    # -- root rotation (docs/trust.md, "Root rotation runbook") -------------------

    async def _signing_ca(self) -> CertificateAuthority:
        """The root that signs new intermediates: the next one once a rotation is active."""
        record = await self._store.rotations.find(ROTATION_RECORD)
        if record is not None and record.record.stage == rotation.Stage.ACTIVE.value:
            return await self._load_ca(NEXT_ROOT_CA)
        return await self._load_ca(ROOT_CA)

    async def _snapshot(self) -> RotationSnapshot:
        record = await self._store.rotations.find(ROTATION_RECORD)
        root = await self._store.cas.get(ROOT_CA)
        nxt = await self._store.cas.find(NEXT_ROOT_CA)
        bundles = tuple(await self._store.trust_domains.list())
        intermediates = tuple(
            m for m in await self._store.cas.list() if m.record.kind == "intermediate"
        )
        clusters = frozenset(c.record.name for c in await self._store.clusters.list())
        current = ca_certificate(root.record)
        if record is None:  # never rotated: stable since the root was made
            hints = [b.record.refresh_hint_seconds for b in bundles]
            hint = max([h for h in hints if h > 0], default=DEFAULT_REFRESH_HINT)
            stage, since, sequence = rotation.Stage.STABLE, current.not_valid_before_utc, 1
        else:
            held = record.record
            stage, since, sequence = rotation.Stage(held.stage), held.stage_since, held.sequence
            hint = held.refresh_hint_seconds
        if (nxt is None) != (stage is rotation.Stage.STABLE):
            have = "a" if nxt is not None else "no"
            raise TrustFailure(
                f"rotation record says {stage.value} but the store holds {have} "
                f"{NEXT_ROOT_CA!r} CA: repair by hand (docs/trust.md)"
            )
        state = rotation.RotationState(
            current=current,
            next=None if nxt is None else ca_certificate(nxt.record),
            stage=stage,
            sequence=sequence,
            refresh_hint=hint,
            clusters=clusters,
            acks=(),
            stage_since=since,
        )
        return RotationSnapshot(record, root, nxt, state, bundles, intermediates)

    async def rotation_status(self, now: datetime) -> RotationStatus:
        """Where the root rotation stands, what comes next and whether it may run now."""
        return status_of(await self._snapshot(), now, self.root_trust_domain)

    def _record(self, state: rotation.RotationState, snap: RotationSnapshot) -> Put:
        record = RootRotation(
            ROTATION_RECORD,
            state.stage.value,
            state.stage_since,
            state.sequence,
            state.refresh_hint,
        )
        expect = ABSENT if snap.record is None else snap.record.revision
        return Put(storage_key(RootRotation.KIND, ROTATION_RECORD), encode(record), expect)

    @staticmethod
    def _bundle_ops(
        snap: RotationSnapshot, add: x509.Certificate | None, remove: x509.Certificate | None
    ) -> list[Op]:
        """Add `add` to / remove `remove` from every bundle of the federation's roots
        (sequence + 1 where the roots change; bundles of other roots are left alone)."""
        ours = {certificate_fingerprint(c) for c in rotation.trusted_roots(snap.state)}
        add_fp = None if add is None else certificate_fingerprint(add)
        remove_fp = None if remove is None else certificate_fingerprint(remove)
        ops: list[Op] = []
        for held in snap.bundles:
            td = held.record
            fps = root_fingerprints(td)
            if not ours & set(fps):
                continue
            if add_fp is not None and remove_fp is not None and add_fp not in fps:
                raise RotationBlocked(
                    f"refusing to retire: bundle {td.name} (sequence {td.sequence}) does not "
                    "hold the next root, so its consumers would trust nothing meshfed issues"
                )
            roots = [pem for pem, fp in zip(td.roots_pem, fps, strict=True) if fp != remove_fp]
            if add is not None and add_fp not in fps:
                roots.append(_pem([add]))
            if not roots:
                raise RotationBlocked(f"refusing to empty the bundle of {td.name}")
            if tuple(roots) == td.roots_pem:
                continue
            updated = TrustDomain(td.name, tuple(roots), td.sequence + 1, td.refresh_hint_seconds)
            ops.append(Put(storage_key(TrustDomain.KIND, td.name), encode(updated), held.revision))
        return ops

    async def _commit(
        self, ops: list[Op], action: str, detail: str, actor: str, now: datetime
    ) -> None:
        """The step's writes and its audit event in one transaction, each write
        conditioned on what the step read: a concurrent step makes this one fail."""
        event = audit.event(
            now, actor, f"rotation-{action}", RootRotation.KIND, ROTATION_RECORD, detail
        )
        try:
            await self._store.commit([*ops, audit.put(event)])
        except (Conflict, AlreadyExists, NotFound):
            raise RotationBlocked(
                f"{action}: the trust material changed meanwhile (another step or replica); "
                "read the rotation status and try again"
            ) from None

    async def _result(self, action: str, message: str, now: datetime) -> RotationResult:
        return RotationResult(action, message, await self.rotation_status(now))

    async def rotation_prepare(self, now: datetime, *, actor: str = "registry") -> RotationResult:
        """Make the next root (key sealed in CaMaterial "root-next") and add it to every
        bundle (sequence + 1): Watch pushes the new bundles to gateways and agents."""
        snap = await self._snapshot()
        try:
            if snap.state.stage is not rotation.Stage.STABLE:  # before generating a key
                rotation.prepare(snap.state, snap.state.current, now)
            new_root = create_root_ca(now)
            state = rotation.prepare(snap.state, new_root.certificate, now)
        except RotationRefused as exc:
            raise RotationBlocked(str(exc)) from None
        except TrustError as exc:
            raise TrustFailure(f"cannot create the next root: {exc}") from exc
        material = self._material(NEXT_ROOT_CA, "root", new_root)
        ops: list[Op] = [
            Put(storage_key(CaMaterial.KIND, NEXT_ROOT_CA), encode(material), ABSENT),
            self._record(state, snap),
            *self._bundle_ops(snap, new_root.certificate, None),
        ]
        fp = certificate_fingerprint(new_root.certificate)
        await self._commit(ops, "prepare", f"next root {fp}", actor, now)
        wait = state.refresh_hint * rotation.PROPAGATION_HINT_MULTIPLE
        return await self._result(
            "prepare",
            f"next root {fp[:16]} added to every bundle; activate after {human_duration(wait)} "
            "(3 x refresh hint), once every cluster holds both roots",
            now,
        )

    async def rotation_activate(
        self, now: datetime, *, force: bool = False, actor: str = "registry"
    ) -> RotationResult:
        """Sign with the next root: re-issue every intermediate under it. Refused until
        propagation completes unless `force` (the operator vouches for every cluster).
        Run again when active to re-issue intermediates still under the old root."""
        snap = await self._snapshot()
        state = snap.state
        if state.stage is not rotation.Stage.ACTIVE:
            if state.stage is rotation.Stage.PROPAGATING:
                held = status_of(snap, now, self.root_trust_domain).checks[0]  # bundles hold next
                if not held.ok:
                    raise RotationBlocked(f"activate: not {held.name} ({held.detail})")
            if force:  # the operator attests that every cluster holds the new bundle
                for cluster in state.clusters:
                    state = rotation.report_bundle(state, cluster, state.sequence, now)
            try:
                state = rotation.activate(state, now)
            except RotationRefused as exc:
                raise RotationBlocked(
                    f"{exc}; clusters do not report their bundle yet, so propagation "
                    "completes after 3 x the refresh hint (force skips the wait)"
                ) from None
            detail = "forced" if force else rotation.propagation_status(snap.state, now).reason
            await self._commit([self._record(state, snap)], "activate", detail, actor, now)
            snap = await self._snapshot()
        reissued = await self._reissue_intermediates(snap, now)
        return await self._result(
            "activate",
            f"signing with the next root; {reissued} intermediate(s) re-issued under it. "
            "Agents and gateways move to them as their SVIDs renew; export the clusters' "
            "mesh CA files again (meshfed trust export --format istio|linkerd)",
            now,
        )

    async def _reissue_intermediates(self, snap: RotationSnapshot, now: datetime) -> int:
        """Each intermediate not yet under the next root, re-issued under it (same name
        and trust domain, new key). A concurrent re-issue of the same CA wins."""
        next_ca = await self._load_ca(NEXT_ROOT_CA)
        count = 0
        for held in snap.intermediates:
            material = held.record
            cert = ca_certificate(material)
            if chains_to(cert, ca_chain(material), [next_ca.certificate]):
                continue
            td = self.root_trust_domain if material.name == REGISTRY_CA else trust_domain_of(cert)
            if td is None:
                raise TrustFailure(f"CA {material.name!r} names no trust domain")
            try:
                ca = create_intermediate_ca(next_ca, material.name, td, now)
            except TrustError as exc:
                raise TrustFailure(f"cannot re-issue the CA of {material.name}: {exc}") from exc
            try:
                await self._store.cas.update(
                    self._material(material.name, "intermediate", ca), held.revision
                )
            except (Conflict, NotFound):
                continue  # re-issued by another replica, or the cluster was removed
            count += 1
        return count

    async def rotation_retire(
        self, now: datetime, *, force: bool = False, actor: str = "registry"
    ) -> RotationResult:
        """Drop the old root from every bundle (sequence + 1); the next root becomes
        "root". Refused while a stored intermediate chains only to the old root (never
        forced) and, unless `force`, until one SVID lifetime after activate."""
        snap = await self._snapshot()
        state = snap.state
        outstanding: list[Sequence[x509.Certificate]] = [
            [ca_certificate(m.record), *ca_chain(m.record)] for m in snap.intermediates
        ]
        try:
            retired = rotation.retire(state, outstanding, now)
        except RotationRefused as exc:
            hint = "; run activate again to re-issue them" if "still chain" in str(exc) else ""
            raise RotationBlocked(f"{exc}{hint}") from None
        not_before = state.stage_since + RETIRE_WAIT
        if not force and now < not_before:
            wait = human_duration(RETIRE_WAIT.total_seconds())
            raise RotationBlocked(
                f"SVIDs issued under the old intermediates may be valid until {not_before} "
                f"({wait} after activate: one SVID lifetime) and the registry cannot see "
                "them; wait, or force once every agent, gateway and mesh workload renewed"
            )
        assert snap.next is not None and state.next is not None  # retire checked: ACTIVE
        nxt = snap.next.record
        promoted = CaMaterial(ROOT_CA, "root", nxt.cert_pem, nxt.sealed_key, nxt.not_after)
        ops: list[Op] = [
            Put(storage_key(CaMaterial.KIND, ROOT_CA), encode(promoted), snap.root.revision),
            Delete(storage_key(CaMaterial.KIND, NEXT_ROOT_CA), snap.next.revision),
            self._record(retired, snap),
            *self._bundle_ops(snap, state.next, state.current),
        ]
        old_fp = certificate_fingerprint(state.current)
        await self._commit(
            ops, "retire", f"old root {old_fp}" + (" (forced)" if force else ""), actor, now
        )
        return await self._result(
            "retire",
            f"old root {old_fp[:16]} removed from every bundle; certificates chaining to it "
            "now fail every handshake. Export and apply the bundles again",
            now,
        )

    async def rotation_abort(self, now: datetime, *, actor: str = "registry") -> RotationResult:
        """Give up a rotation before activate: drop the next root (sequence + 1)."""
        snap = await self._snapshot()
        try:
            state = rotation.abort(snap.state, now)
        except RotationRefused as exc:
            raise RotationBlocked(str(exc)) from None
        assert snap.next is not None and snap.state.next is not None  # abort checked
        ops: list[Op] = [
            Delete(storage_key(CaMaterial.KIND, NEXT_ROOT_CA), snap.next.revision),
            self._record(state, snap),
            *self._bundle_ops(snap, None, snap.state.next),
        ]
        fp = certificate_fingerprint(snap.state.next)
        await self._commit(ops, "abort", f"next root {fp}", actor, now)
        return await self._result(
            "abort", f"next root {fp[:16]} removed from every bundle; nothing was signed by it", now
        )

    async def rotation_step(
        self, action: str, now: datetime, *, force: bool = False, actor: str = "registry"
    ) -> RotationResult:
        """One named step (the REST API's POST /api/v1/trust/rotation)."""
        if action == "prepare":
            return await self.rotation_prepare(now, actor=actor)
        if action == "activate":
            return await self.rotation_activate(now, force=force, actor=actor)
        if action == "retire":
            return await self.rotation_retire(now, force=force, actor=actor)
        if action == "abort":
            return await self.rotation_abort(now, actor=actor)
        raise ValidationError("action", f"{action!r} is not one of {', '.join(ROTATION_ACTIONS)}")
