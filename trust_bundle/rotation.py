"""Staged root rotation as a pure state machine.

Why this module exists: root rotation is where meshes drop connections
(restart the fleet, stale trust anchors). Every transition here is a pure
function ``(state, inputs, now) -> new state`` that either returns the next
state or raises RotationRefused with the reason, so the registry can persist
the state, an operator can dry-run a step, and tests can walk every path
without a clock. Keys are not held here; the shell generates the new root
and signs intermediates.

Stages (current/next root slots):
  STABLE       bundle = [current]; current signs intermediates
  PROPAGATING  after prepare: bundle = [current, next], sequence + 1; waiting
               until every cluster reports the new sequence, or 3 x refresh hint
  ACTIVE       after activate: next signs new intermediates; SVIDs move to the
               new root as they renew; bundle unchanged
  STABLE       after retire: bundle = [next] (now current), sequence + 1
abort (PROPAGATING only) drops the next root again, sequence + 1.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from cryptography import x509

from trust_bundle.errors import RotationRefused, ValidationFailed
from trust_bundle.spiffe_bundle import DEFAULT_REFRESH_HINT, SpiffeBundle
from trust_bundle.validate import chains_to, check_root, describe, require_aware

# Issue 3: propagation may end once 3 refresh hints have elapsed, i.e. every
# consumer polling at the hint has had three chances to fetch the new bundle.
PROPAGATION_HINT_MULTIPLE = 3


class Stage(enum.Enum):
    STABLE = "stable"
    PROPAGATING = "propagating"
    ACTIVE = "active"


@dataclass(frozen=True, slots=True)
class RotationState:
    """Where the federation is in a rotation. ``acks`` maps cluster -> highest bundle
    sequence it reported, stored as sorted pairs so the state stays immutable."""

    current: x509.Certificate
    next: x509.Certificate | None
    stage: Stage
    sequence: int
    refresh_hint: int
    clusters: frozenset[str]
    acks: tuple[tuple[str, int], ...]
    stage_since: datetime

    def ack_map(self) -> dict[str, int]:
        return dict(self.acks)


@dataclass(frozen=True, slots=True)
class PropagationStatus:
    """Whether activate may proceed, and what is still missing."""

    complete: bool
    pending: frozenset[str]
    waited: timedelta
    required_wait: timedelta
    reason: str


def initial_state(
    root: x509.Certificate,
    clusters: Iterable[str],
    now: datetime,
    *,
    sequence: int = 1,
    refresh_hint: int = DEFAULT_REFRESH_HINT,
) -> RotationState:
    """A federation with one root and no rotation in progress."""
    require_aware(now)
    if refresh_hint <= 0:
        raise RotationRefused("refresh hint must be positive")
    return RotationState(
        current=root,
        next=None,
        stage=Stage.STABLE,
        sequence=sequence,
        refresh_hint=refresh_hint,
        clusters=frozenset(clusters),
        acks=(),
        stage_since=now,
    )


def trusted_roots(state: RotationState) -> tuple[x509.Certificate, ...]:
    """The roots every bundle must contain in this state (current first)."""
    return (state.current,) if state.next is None else (state.current, state.next)


def signing_root(state: RotationState) -> x509.Certificate:
    """The root that signs new intermediates: next once ACTIVE, else current."""
    if state.stage is Stage.ACTIVE and state.next is not None:
        return state.next
    return state.current


def bundle_for(state: RotationState, trust_domain: str) -> SpiffeBundle:
    """The SPIFFE bundle to publish for ``trust_domain`` in this state."""
    return SpiffeBundle(
        trust_domain=trust_domain,
        x509_authorities=trusted_roots(state),
        sequence=state.sequence,
        refresh_hint=state.refresh_hint,
    )


def with_clusters(state: RotationState, clusters: Iterable[str]) -> RotationState:
    """Change cluster membership (a joining cluster must report before activation)."""
    members = frozenset(clusters)
    return replace(state, clusters=members, acks=tuple(p for p in state.acks if p[0] in members))


def prepare(state: RotationState, new_root: x509.Certificate, now: datetime) -> RotationState:
    """Add ``new_root`` to the bundle (sequence + 1) and start propagating it."""
    if state.stage is not Stage.STABLE:
        raise RotationRefused(f"prepare needs stage stable, is {state.stage.value}")
    if new_root == state.current:
        raise RotationRefused("the new root is the current root")
    try:
        check_root(new_root, now)
    except ValidationFailed as exc:
        raise RotationRefused(f"new root is not a usable root: {exc}") from exc
    return replace(
        state, next=new_root, stage=Stage.PROPAGATING, sequence=state.sequence + 1, stage_since=now
    )


def report_bundle(
    state: RotationState, cluster: str, sequence: int, now: datetime
) -> RotationState:
    """Record that ``cluster`` now holds bundle ``sequence`` (highest report wins)."""
    require_aware(now)
    if cluster not in state.clusters:
        raise RotationRefused(f"unknown cluster {cluster!r}")
    if sequence > state.sequence:
        raise RotationRefused(f"{cluster} reports sequence {sequence}, never published")
    acks = state.ack_map()
    acks[cluster] = max(sequence, acks.get(cluster, sequence))
    return replace(state, acks=tuple(sorted(acks.items())))


def propagation_status(state: RotationState, now: datetime) -> PropagationStatus:
    """Complete when every cluster reported the current sequence, or after 3 x hint."""
    require_aware(now)
    acks = state.ack_map()
    pending = frozenset(c for c in state.clusters if acks.get(c, -1) < state.sequence)
    waited = now - state.stage_since
    required = timedelta(seconds=state.refresh_hint * PROPAGATION_HINT_MULTIPLE)
    if state.stage is not Stage.PROPAGATING:
        return PropagationStatus(False, pending, waited, required, "not propagating")
    if not pending:
        return PropagationStatus(True, pending, waited, required, "every cluster reported")
    if waited >= required:
        return PropagationStatus(True, pending, waited, required, "3 x refresh hint elapsed")
    return PropagationStatus(False, pending, waited, required, "waiting for clusters")


def activate(state: RotationState, now: datetime) -> RotationState:
    """Switch signing to the new root once propagation is complete."""
    if state.stage is not Stage.PROPAGATING:
        raise RotationRefused(f"activate needs stage propagating, is {state.stage.value}")
    status = propagation_status(state, now)
    if not status.complete:
        missing = ", ".join(sorted(status.pending))
        raise RotationRefused(
            f"propagation incomplete: waiting for {missing} "
            f"({_span(status.waited)} of {_span(status.required_wait)} elapsed)"
        )
    return replace(state, stage=Stage.ACTIVE, stage_since=now)


def _span(d: timedelta) -> str:
    """A duration for messages: 41s, 15m, 24h (whole units, rounded down)."""
    seconds = int(d.total_seconds())
    if seconds < 120:
        return f"{seconds}s"
    return f"{seconds // 60}m" if seconds < 7200 else f"{seconds // 3600}h"


def still_on_old_root(
    state: RotationState,
    outstanding: Iterable[Sequence[x509.Certificate]],
    now: datetime,
) -> list[x509.Certificate]:
    """Unexpired certificates (each given as [cert, *intermediates]) that do not chain
    to the next root, i.e. would stop verifying if the current root were removed."""
    if state.next is None:
        return []
    stuck = []
    for chain in outstanding:
        cert, intermediates = chain[0], list(chain[1:])
        if cert.not_valid_after_utc < now:
            continue
        if not chains_to(cert, intermediates, [state.next]):
            stuck.append(cert)
    return stuck


def retire(
    state: RotationState,
    outstanding: Iterable[Sequence[x509.Certificate]],
    now: datetime,
) -> RotationState:
    """Remove the old root (sequence + 1). Refuses while any outstanding unexpired
    certificate chains only to it, and refuses to leave the bundle empty."""
    require_aware(now)
    if state.stage is not Stage.ACTIVE:
        raise RotationRefused(f"retire needs stage active, is {state.stage.value}")
    if state.next is None:
        raise RotationRefused("refusing to empty the bundle: there is no next root")
    stuck = still_on_old_root(state, outstanding, now)
    if stuck:
        names = "; ".join(describe(c) for c in stuck[:5])
        raise RotationRefused(
            f"{len(stuck)} certificate(s) still chain only to the old root: {names}"
        )
    return replace(
        state,
        current=state.next,
        next=None,
        stage=Stage.STABLE,
        sequence=state.sequence + 1,
        stage_since=now,
    )


def abort(state: RotationState, now: datetime) -> RotationState:
    """Give up a rotation before activation: drop the next root (sequence + 1)."""
    require_aware(now)
    if state.stage is not Stage.PROPAGATING:
        raise RotationRefused(
            f"abort is only possible while propagating, is {state.stage.value}"
            " (after activate, new intermediates exist under the new root)"
        )
    return replace(
        state, next=None, stage=Stage.STABLE, sequence=state.sequence + 1, stage_since=now
    )
