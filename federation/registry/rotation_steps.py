"""The staged root rotation's steps over the store: prepare, activate, retire, abort.

Why this module exists: the rotation is the registry's longest procedure (every
step one compare-and-swap commit of the rotation record, the bundles and the
intermediates, with its audit event); it is a mixin of `TrustService` so trust.py
stays about issuing, storing and serving certificates. The decisions themselves
are trust_bundle.rotation's pure state machine, with time passed in.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from cryptography import x509

from federation.errors import (
    AlreadyExists,
    Conflict,
    NotFound,
    ValidationError,
)
from federation.model import BundleReport, CaMaterial, RootRotation, TrustDomain
from federation.registry import audit
from federation.registry.rotation_view import (
    BUNDLE_REPORT_REFRESH,
    BUNDLE_REPORT_STALE,
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
    acknowledged,
    ca_certificate,
    ca_chain,
    human_duration,
    pem_text,
    root_fingerprints,
    status_of,
    trust_domain_of,
)
from federation.store import Store
from federation.store.backend import ABSENT, Delete, Op, Put
from federation.store.typed import encode, storage_key
from trust_bundle import (
    CertificateAuthority,
    RotationRefused,
    TrustError,
    create_intermediate_ca,
    create_root_ca,
    rotation,
)
from trust_bundle.spiffe_bundle import (
    DEFAULT_REFRESH_HINT,
    certificate_fingerprint,
)
from trust_bundle.validate import chains_to


class RotationSteps:
    """Rotation methods of `TrustService`; it provides the store and the CA loader."""

    _store: Store
    root_trust_domain: str

    if TYPE_CHECKING:

        async def _load_ca(self, name: str) -> CertificateAuthority: ...

        def _material(self, name: str, kind: str, ca: CertificateAuthority) -> CaMaterial: ...

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
        reports = tuple(await self._store.bundle_reports.list())
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
        state = acknowledged(state, [r.record for r in reports])
        return RotationSnapshot(record, root, nxt, state, bundles, intermediates)

    async def rotation_status(self, now: datetime) -> RotationStatus:
        """Where the root rotation stands, what comes next and whether it may run now."""
        return status_of(await self._snapshot(), now, self.root_trust_domain)

    def _record(
        self, state: rotation.RotationState, snap: RotationSnapshot, retired: str | None = None
    ) -> Put:
        before = () if snap.record is None else snap.record.record.retired_roots_sha256
        record = RootRotation(
            ROTATION_RECORD,
            state.stage.value,
            state.stage_since,
            state.sequence,
            state.refresh_hint,
            before if retired is None else (*before, retired),
        )
        expect = ABSENT if snap.record is None else snap.record.revision
        return Put(storage_key(RootRotation.KIND, ROTATION_RECORD), encode(record), expect)

    @staticmethod
    def _bundle_ops(
        snap: RotationSnapshot,
        add: x509.Certificate | None,
        remove: x509.Certificate | None,
        signing: x509.Certificate,
    ) -> list[Op]:
        """Add `add` to / remove `remove` from every bundle of the federation's roots
        and name `signing` as the root that signs now (sequence + 1 where the roots
        change; bundles of other roots are left alone)."""
        signing_fp = certificate_fingerprint(signing)
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
                roots.append(pem_text([add]))
            if not roots:
                raise RotationBlocked(f"refusing to empty the bundle of {td.name}")
            changed = tuple(roots) != td.roots_pem
            if not changed and td.signing_root_sha256 == signing_fp:
                continue
            updated = TrustDomain(
                td.name,
                tuple(roots),
                td.sequence + 1 if changed else td.sequence,
                td.refresh_hint_seconds,
                signing_fp,
            )
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
            *self._bundle_ops(snap, new_root.certificate, None, snap.state.current),
        ]
        fp = certificate_fingerprint(new_root.certificate)
        await self._commit(ops, "prepare", f"next root {fp}", actor, now)
        wait = state.refresh_hint * rotation.PROPAGATION_HINT_MULTIPLE
        return await self._result(
            "prepare",
            f"next root {fp[:16]} added to every bundle; activate once every cluster's "
            f"gateway reports both roots, or after {human_duration(wait)} (3 x refresh hint)",
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
                    f"{exc}; a cluster counts once its gateway reports holding both roots "
                    "(within seconds of prepare), else after 3 x the refresh hint "
                    "(force skips the wait)"
                ) from None
            detail = "forced" if force else rotation.propagation_status(snap.state, now).reason
            await self._commit([self._record(state, snap)], "activate", detail, actor, now)
            snap = await self._snapshot()
        reissued = await self._reissue_intermediates(snap, now)
        await self._announce_signing_root()
        return await self._result(
            "activate",
            f"signing with the next root; {reissued} intermediate(s) re-issued under it. "
            "Agents and gateways move to them as their SVIDs renew; export the clusters' "
            "mesh CA files again (meshfed trust export --format istio|linkerd)",
            now,
        )

    async def _announce_signing_root(self) -> None:
        """Name the next root as the signing one in every bundle, after the
        intermediates moved to it: agents and gateways renew their SVIDs when they
        see it (federation.client.rotation), and must get new-root SVIDs when they do.
        Idempotent; a second activate repeats it after an interrupted one."""
        snap = await self._snapshot()
        ops = self._bundle_ops(snap, None, None, rotation.signing_root(snap.state))
        if not ops:
            return
        try:
            await self._store.commit(ops)
        except (Conflict, NotFound):
            raise RotationBlocked(
                "activate: the bundles changed meanwhile; run activate again so agents and "
                "gateways learn the signing root"
            ) from None

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
            self._record(retired, snap, certificate_fingerprint(state.current)),
            *self._bundle_ops(snap, state.next, state.current, state.next),
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
            *self._bundle_ops(snap, None, snap.state.next, snap.state.current),
        ]
        fp = certificate_fingerprint(snap.state.next)
        await self._commit(ops, "abort", f"next root {fp}", actor, now)
        return await self._result(
            "abort", f"next root {fp[:16]} removed from every bundle; nothing was signed by it", now
        )

    async def record_bundle_report(self, report: BundleReport) -> None:
        """Keep the roots one gateway replica verifies with (its evidence that a new
        bundle arrived): rewritten when the set changes or is BUNDLE_REPORT_REFRESH
        old, so most periodic reports cost one read; replicas silent for
        BUNDLE_REPORT_STALE are dropped. A concurrent report of the same replica wins."""
        held = await self._store.bundle_reports.find(report.key)
        fresh = held is not None and report.reported - held.record.reported < BUNDLE_REPORT_REFRESH
        if held is not None and fresh and held.record.roots_sha256 == report.roots_sha256:
            return
        with contextlib.suppress(AlreadyExists, Conflict, NotFound):
            if held is None:
                await self._store.bundle_reports.create(report)
            else:
                await self._store.bundle_reports.update(report, held.revision)
        for other in await self._store.bundle_reports.list(f"{report.cluster}/"):
            if report.reported - other.record.reported > BUNDLE_REPORT_STALE:
                with contextlib.suppress(Conflict, NotFound):
                    await self._store.bundle_reports.delete(other.record.key, other.revision)

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
