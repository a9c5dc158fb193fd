"""Leader election among the agent replicas of one cluster: the pure state machine.

Several `meshfed agent` replicas may run for one cluster; only one of them, the
leader, writes (the export stream to the registry, ServiceImports, EndpointSlices,
ServiceExport conditions). They agree through a `coordination.k8s.io/v1` Lease the
way client-go's `tools/leaderelection` does (`tryAcquireOrRenew` in
staging/src/k8s.io/client-go/tools/leaderelection/leaderelection.go):

- a candidate reads the Lease; it may take it when nobody holds it (absent, or
  `holderIdentity` empty after a release) or when the record has not changed for
  `leaseDurationSeconds` *as measured on the candidate's own clock* since it first
  saw that version. Timestamps written in the record are never compared with the
  local clock (tolerant to clock skew, not to skew *rate*, as client-go says);
- taking it writes `holderIdentity` = me, `acquireTime` = `renewTime` = now and
  `leaseTransitions` + 1; the holder renews every `retry_period` (`renewTime` = now,
  the rest kept). Every write is a PUT carrying the resourceVersion that was read,
  so of two candidates racing for one version exactly one wins (the other gets
  409 Conflict and reads again);
- the leader leads only while its last successful write was *sent* less than
  `renew_deadline` ago (local clock). Because `renew_deadline < lease_duration`,
  it has stopped before any other candidate can see the lease as expired.

Defaults are client-go's recommended ones: LeaseDuration 15 s, RenewDeadline 10 s,
RetryPeriod 2 s (`RecommendedDefaultLeaderElectionConfiguration` in
staging/src/k8s.io/component-base/config/v1alpha1/defaults.go; "Core clients
default this value to ..." in client-go's `LeaderElectionConfig`), and its
validation (`NewLeaderElector`: lease > renew > 1.2 x retry, the 1.2 being
`JitterFactor`).

Inputs are the observed Lease (or None when it does not exist), the identity and
the time: `now` on a monotonic local clock (seconds) for every deadline, `wall`
only to stamp the record written. Outputs are a `Decision`: the action, the Lease
to write and when to look again. The asyncio shell is `discovery_sync.kube.lease`.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, replace
from datetime import datetime

LEASE_DURATION = 15  # seconds; client-go / component-base recommended defaults
RENEW_DEADLINE = 10.0
RETRY_PERIOD = 2.0
JITTER_FACTOR = 1.2  # client-go's JitterFactor: renew_deadline must exceed retry x this


@dataclass(frozen=True, slots=True)
class Timing:
    """How long a lease lasts, how long a leader tries to renew, how often anyone tries.

    `lease_duration` is whole seconds: it is written to `leaseDurationSeconds`,
    and the other candidates time the lease by what they read there.
    """

    lease_duration: int = LEASE_DURATION
    renew_deadline: float = RENEW_DEADLINE
    retry_period: float = RETRY_PERIOD

    def __post_init__(self) -> None:
        if not isinstance(self.lease_duration, int) or self.lease_duration < 1:
            raise ValueError(f"lease duration {self.lease_duration!r}: a whole number >= 1 s")
        if self.retry_period <= 0 or self.renew_deadline <= 0:
            raise ValueError("renew deadline and retry period must be greater than zero")
        if self.lease_duration <= self.renew_deadline:
            raise ValueError(
                f"lease duration ({self.lease_duration} s) must be greater than the "
                f"renew deadline ({self.renew_deadline} s)"
            )
        if self.renew_deadline <= JITTER_FACTOR * self.retry_period:
            raise ValueError(
                f"renew deadline ({self.renew_deadline} s) must be greater than "
                f"{JITTER_FACTOR} x the retry period ({self.retry_period} s)"
            )


@dataclass(frozen=True, slots=True)
class LeaseRecord:
    """The fields of a Lease that leader election uses (`spec` and resourceVersion)."""

    holder: str = ""  # spec.holderIdentity; "" when nobody holds it
    duration: int = 0  # spec.leaseDurationSeconds
    acquire_time: datetime | None = None
    renew_time: datetime | None = None
    transitions: int = 0  # spec.leaseTransitions
    resource_version: str = ""  # "" for a Lease not created yet


class Action(enum.Enum):
    ACQUIRE = "acquire"  # write the Lease naming me (create it, or take it over)
    RENEW = "renew"  # I lead: write renewTime
    WAIT = "wait"  # someone else leads, or nothing to do until `next_check`
    STEP_DOWN = "step down"  # I led and must stop writing now


@dataclass(frozen=True, slots=True)
class State:
    identity: str
    observed: LeaseRecord | None = None  # the last Lease read (None: absent or not read)
    observed_at: float = -math.inf  # local time `observed` last changed
    leading: bool = False
    renewed_at: float = -math.inf  # local time our last successful write was sent

    def deadline(self, timing: Timing) -> float:
        """Local time until which this candidate may act as the leader."""
        return self.renewed_at + timing.renew_deadline if self.leading else -math.inf

    def is_leader(self, now: float, timing: Timing) -> bool:
        return self.leading and now < self.deadline(timing)

    @property
    def leader(self) -> str:
        """The holder last observed ("" for none)."""
        return self.observed.holder if self.observed is not None else ""


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    state: State  # the state after deciding (STEP_DOWN: no longer leading)
    write: LeaseRecord | None = None  # ACQUIRE / RENEW: the Lease to write
    next_check: float = 0.0  # local time to read the Lease again

    @property
    def create(self) -> bool:
        """The write creates the Lease (POST) rather than replacing it (PUT)."""
        return self.write is not None and self.write.resource_version == ""


def observe(state: State, lease: LeaseRecord | None, now: float) -> State:
    """A read of the Lease (None: it does not exist) at local time `now`.

    The observation time moves only when the record changed: a lease nobody
    renews expires `duration` seconds after this candidate first saw its version.
    """
    if lease == state.observed and state.observed_at > -math.inf:
        return state
    return replace(state, observed=lease, observed_at=now)


def expire(state: State, now: float, timing: Timing) -> State:
    """Stop leading once the renew deadline has passed without a successful write."""
    if state.leading and now >= state.deadline(timing):
        return replace(state, leading=False)
    return state


def decide(state: State, now: float, wall: datetime, timing: Timing) -> Decision:
    """What to do after reading the Lease (`observe`) at local time `now`."""
    if state.leading and now >= state.deadline(timing):
        return Decision(Action.STEP_DOWN, replace(state, leading=False), next_check=now)
    lease = state.observed
    me = state.identity
    if lease is None:  # absent: whoever creates it first leads
        if state.leading:  # someone deleted it under us: stop, then compete again
            return Decision(Action.STEP_DOWN, replace(state, leading=False), next_check=now)
        record = LeaseRecord(me, timing.lease_duration, wall, wall, 0, "")
        return Decision(Action.ACQUIRE, state, record, now + timing.retry_period)
    if lease.holder == me:  # mine: renew (or lead again if I had stepped down)
        record = replace(lease, duration=timing.lease_duration, renew_time=wall)
        if lease.acquire_time is None:
            record = replace(record, acquire_time=wall)
        action = Action.RENEW if state.leading else Action.ACQUIRE
        return Decision(action, state, record, now + timing.retry_period)
    if state.leading:  # the record names someone else: they took it; stop at once
        return Decision(Action.STEP_DOWN, replace(state, leading=False), next_check=now)
    expires = state.observed_at + lease.duration
    if lease.holder and now < expires:
        return Decision(Action.WAIT, state, None, min(now + timing.retry_period, expires))
    record = LeaseRecord(
        me, timing.lease_duration, wall, wall, lease.transitions + 1, lease.resource_version
    )
    return Decision(Action.ACQUIRE, state, record, now + timing.retry_period)


def succeeded(state: State, written: LeaseRecord, sent_at: float, now: float) -> State:
    """Our write landed (`written` as the API server returned it, with its new version).

    The lead is timed from `sent_at`, when the request left, not from the reply:
    the others cannot have seen the new version before it was sent.
    """
    return replace(state, observed=written, observed_at=now, leading=True, renewed_at=sent_at)


def failed(state: State, now: float, timing: Timing) -> State:
    """Our write was refused (409: someone wrote first) or failed: read again."""
    return expire(state, now, timing)


def release(state: State, wall: datetime) -> LeaseRecord | None:
    """The Lease to write when the leader stops on purpose (client-go's ReleaseOnCancel).

    The holder is cleared and the duration set to 1 s, so a follower takes over at
    its next read instead of waiting out the lease. None when there is nothing to
    release.
    """
    lease = state.observed
    if not state.leading or lease is None or lease.holder != state.identity:
        return None
    return LeaseRecord("", 1, wall, wall, lease.transitions, lease.resource_version)
