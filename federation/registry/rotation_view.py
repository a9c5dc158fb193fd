"""Root rotation as the registry reports it: status records and the pure status check.

Why this module exists: `TrustService` drives the staged rotation of
`trust_bundle.rotation` over the store; what it reports (roots, bundles,
intermediates, propagation, the checks the next step needs) is computed here from a
snapshot of the store with time passed in, so the status logic is testable data in,
data out, and trust.py stays about issuing and storing certificates.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from federation.errors import (
    FederationError,
)
from federation.model import BundleReport, CaMaterial, RootRotation, TrustDomain
from federation.store.typed import Versioned
from trust_bundle import (
    TrustError,
    parse_spiffe_id,
    rotation,
)
from trust_bundle.spiffe_bundle import (
    certificate_fingerprint,
)
from trust_bundle.svid import DEFAULT_SVID_LIFETIME
from trust_bundle.validate import chains_to

ROOT_CA = "root"
NEXT_ROOT_CA = "root-next"  # the incoming root during a staged rotation (docs/trust.md)
# The intermediate of the root trust domain; it signs the registry's serving certificate.
REGISTRY_CA = "registry"


class TrustFailure(FederationError):
    """Trust material could not be used (wrong key passphrase, damaged record, signing failed)."""


class RotationBlocked(FederationError):
    """A root rotation step was refused; the message says why (the API answers 409)."""


def trust_domain_of(cert: x509.Certificate) -> str | None:
    """An intermediate's trust domain: its URI SAN is spiffe://<td> (docs/trust.md)."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return None
    for uri in san.value.get_values_for_type(x509.UniformResourceIdentifier):
        try:
            return parse_spiffe_id(uri).trust_domain
        except TrustError:
            continue
    return None


# -- root rotation: what `rotation_status` reports -----------------------------------

ROTATION_RECORD = "root"  # the RootRotation record's key: one federation root
ROTATION_ACTIONS = ("prepare", "activate", "retire", "abort")
# The registry keeps no issued SVIDs, so `retire` cannot check them the way it checks
# intermediates; it waits after activate instead, unless forced: one default SVID
# lifetime (every SVID of an old intermediate has expired or was renewed under a new
# one). The control plane's own serving certificate follows the re-issued registry CA
# within seconds (federation.controlplane.server, Settings.trust_check), so it needs
# no extra wait. docs/trust.md, runbook step 4.
RETIRE_WAIT = DEFAULT_SVID_LIFETIME
# Gateways re-send their health report every 30 s (eastwest_gateway.registry_mode
# REPORT_REFRESH); the registry rewrites a replica's bundle report at least every
# 2 of those, and a replica silent for 3 rewrites is gone (scaled down, rescheduled).
BUNDLE_REPORT_REFRESH = timedelta(seconds=60)
BUNDLE_REPORT_STALE = 3 * BUNDLE_REPORT_REFRESH


@dataclass(frozen=True, slots=True)
class RootInfo:
    fingerprint_sha256: str  # of the certificate DER, as in SPIFFE bundle tooling
    subject: str
    not_before: datetime
    not_after: datetime


@dataclass(frozen=True, slots=True)
class BundleInfo:
    """One served bundle (TrustDomain record) as the rotation sees it."""

    trust_domain: str
    sequence: int
    roots: tuple[str, ...]  # fingerprints, in the bundle's order
    has_current: bool
    has_next: bool


@dataclass(frozen=True, slots=True)
class IntermediateInfo:
    name: str  # the cluster, or "registry" (the registry's own CA)
    trust_domain: str | None
    root: str  # "current", "next" or "unknown": which root it chains to
    not_after: datetime


@dataclass(frozen=True, slots=True)
class PropagationInfo:
    complete: bool
    reason: str
    waited_seconds: int
    required_seconds: int
    # Clusters whose gateway has not reported holding every published root
    # (ReportHealth, `acknowledged`): propagation completes when none is left, or on
    # time (3 x refresh hint), e.g. for a cluster without a gateway.
    pending: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RotationCheck:
    name: str
    ok: bool
    detail: str = ""


@dataclass(frozen=True, slots=True)
class RotationStatus:
    stage: str  # stable, propagating, active
    stage_since: datetime
    sequence: int
    refresh_hint_seconds: int
    signing_root: str  # "current" or "next"
    current_root: RootInfo
    next_root: RootInfo | None
    propagation: PropagationInfo
    next_action: str  # prepare, activate or retire
    ready: bool  # whether next_action would run now without force
    retire_not_before: datetime | None
    bundles: tuple[BundleInfo, ...]
    intermediates: tuple[IntermediateInfo, ...]
    checks: tuple[RotationCheck, ...]

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True, slots=True)
class RotationResult:
    action: str
    message: str
    status: RotationStatus


@dataclass(frozen=True, slots=True)
class RotationSnapshot:
    """Everything a rotation step reads, with the revisions its commit expects."""

    record: Versioned[RootRotation] | None
    root: Versioned[CaMaterial]
    next: Versioned[CaMaterial] | None
    state: rotation.RotationState
    bundles: tuple[Versioned[TrustDomain], ...]
    intermediates: tuple[Versioned[CaMaterial], ...]


def pem_text(certs: list[x509.Certificate] | tuple[x509.Certificate, ...]) -> str:
    return "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in certs)


def ca_certificate(material: CaMaterial) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(material.cert_pem.encode())
    except ValueError as exc:
        raise TrustFailure(f"CA material {material.name!r} is unusable: {exc}") from exc


def ca_chain(material: CaMaterial) -> list[x509.Certificate]:
    if not material.chain_pem.strip():
        return []
    try:
        return x509.load_pem_x509_certificates(material.chain_pem.encode())
    except ValueError as exc:
        raise TrustFailure(f"CA material {material.name!r} has a bad chain: {exc}") from exc


def _root_info(cert: x509.Certificate) -> RootInfo:
    return RootInfo(
        certificate_fingerprint(cert),
        cert.subject.rfc4514_string(),
        cert.not_valid_before_utc,
        cert.not_valid_after_utc,
    )


def root_fingerprints(td: TrustDomain) -> list[str]:
    try:
        return [
            certificate_fingerprint(c)
            for pem in td.roots_pem
            for c in x509.load_pem_x509_certificates(pem.encode())
        ]
    except ValueError as exc:
        raise TrustFailure(f"trust domain {td.name}: a root is unreadable: {exc}") from exc


def human_duration(seconds: float) -> str:
    if seconds >= 2 * 3600:
        return f"{seconds / 3600:.0f}h"
    return f"{seconds / 60:.0f}m" if seconds >= 120 else f"{seconds:.0f}s"


def status_of(snap: RotationSnapshot, now: datetime, root_trust_domain: str) -> RotationStatus:
    """Where the rotation stands, from what a step would read (pure: no I/O, time passed in)."""
    state = snap.state
    current_fp = certificate_fingerprint(state.current)
    next_fp = None if state.next is None else certificate_fingerprint(state.next)
    bundles = []
    for b in snap.bundles:
        fps = root_fingerprints(b.record)
        bundles.append(
            BundleInfo(
                b.record.name,
                b.record.sequence,
                tuple(fps),
                current_fp in fps,
                next_fp is not None and next_fp in fps,
            )
        )
    intermediates = []
    for m in snap.intermediates:
        cert, chain = ca_certificate(m.record), ca_chain(m.record)
        if state.next is not None and chains_to(cert, chain, [state.next]):
            under = "next"
        elif chains_to(cert, chain, [state.current]):
            under = "current"
        else:
            under = "unknown"
        td = root_trust_domain if m.record.name == REGISTRY_CA else trust_domain_of(cert)
        intermediates.append(IntermediateInfo(m.record.name, td, under, cert.not_valid_after_utc))
    prop = rotation.propagation_status(state, now)
    propagation = PropagationInfo(
        prop.complete,
        prop.reason,
        int(prop.waited.total_seconds()),
        int(prop.required_wait.total_seconds()),
        tuple(sorted(prop.pending)),
    )
    checks: list[RotationCheck] = []
    retire_not_before = None
    if state.stage is rotation.Stage.STABLE:
        action, ready = "prepare", True
        ours = [b for b in bundles if b.has_current]
        checks.append(
            RotationCheck(
                "every served bundle holds the current root",
                len(ours) == len(bundles),
                f"{len(ours)} of {len(bundles)} bundles",
            )
        )
    else:
        ours = [b for b in bundles if b.has_current or b.has_next]
        holding = [b for b in ours if b.has_next]
        checks.append(
            RotationCheck(
                "every served bundle holds the next root",
                len(holding) == len(ours),
                f"{len(holding)} of {len(ours)} bundles",
            )
        )
    if state.stage is rotation.Stage.PROPAGATING:
        action, ready = "activate", prop.complete and len(holding) == len(ours)
        waited = min(prop.waited, prop.required_wait).total_seconds()
        percent = 100 * waited / max(prop.required_wait.total_seconds(), 1)
        checks.append(
            RotationCheck(
                "propagation complete",
                prop.complete,
                f"{prop.reason}; {human_duration(waited)} of "
                f"{human_duration(prop.required_wait.total_seconds())} waited ({percent:.0f}%)"
                + (f"; not reported by {', '.join(sorted(prop.pending))}" if prop.pending else ""),
            )
        )
    if state.stage is rotation.Stage.ACTIVE:
        moved = [i for i in intermediates if i.root == "next"]
        retire_not_before = state.stage_since + RETIRE_WAIT
        waited = min(now - state.stage_since, RETIRE_WAIT).total_seconds()
        checks.append(
            RotationCheck(
                "every intermediate chains to the next root",
                len(moved) == len(intermediates),
                f"{len(moved)} of {len(intermediates)} re-issued"
                + ("" if len(moved) == len(intermediates) else "; run activate again"),
            )
        )
        checks.append(
            RotationCheck(
                "renewal window since activate elapsed",
                now >= retire_not_before,
                f"{human_duration(waited)} of {human_duration(RETIRE_WAIT.total_seconds())} "
                f"({100 * waited / RETIRE_WAIT.total_seconds():.0f}%); SVIDs of old "
                "intermediates renew by then",
            )
        )
        action, ready = "retire", all(c.ok for c in checks)
    return RotationStatus(
        stage=state.stage.value,
        stage_since=state.stage_since,
        sequence=state.sequence,
        refresh_hint_seconds=state.refresh_hint,
        signing_root="next" if state.stage is rotation.Stage.ACTIVE else "current",
        current_root=_root_info(state.current),
        next_root=None if state.next is None else _root_info(state.next),
        propagation=propagation,
        next_action=action,
        ready=ready,
        retire_not_before=retire_not_before,
        bundles=tuple(bundles),
        intermediates=tuple(intermediates),
        checks=tuple(checks),
    )


def acknowledged(
    state: rotation.RotationState, reports: Iterable[BundleReport]
) -> rotation.RotationState:
    """`state` with an ack for every member cluster whose live gateway replicas all last
    reported holding every root the federation publishes now. Live: reported within
    BUNDLE_REPORT_STALE of the cluster's newest report (a replica that went away stops
    counting, one that is stuck on the old bundle holds the cluster back). A report
    from before `prepare` cannot hold the next root, so it never counts for the
    rotation in progress."""
    wanted = {certificate_fingerprint(c) for c in rotation.trusted_roots(state)}
    by_cluster: dict[str, list[BundleReport]] = {}
    for report in reports:
        if report.cluster in state.clusters:
            by_cluster.setdefault(report.cluster, []).append(report)
    for cluster, held in sorted(by_cluster.items()):
        newest = max(r.reported for r in held)
        live = [r for r in held if newest - r.reported <= BUNDLE_REPORT_STALE]
        if all(wanted <= set(r.roots_sha256) for r in live):
            state = rotation.report_bundle(state, cluster, state.sequence, newest)
    return state
