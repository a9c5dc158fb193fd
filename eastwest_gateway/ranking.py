"""Locality-aware ranking of upstream clusters, and outlier ejection (pure).

Why it exists: which cluster a new egress connection goes to is the heart of
failover, and it must be testable without sockets or clocks. Everything here
takes the caller's locality, the candidates, their outlier state, ``now`` and a
random source as parameters and returns new values.

Ranking rules (in this order):

1. clusters with no ready endpoints, or whose gateway probe is DOWN, are skipped;
   clusters currently ejected are skipped too -- unless every usable cluster is
   ejected, in which case the ejected ones are returned (soonest-to-return first)
   as a last resort rather than failing the connection outright;
2. lower explicit ``priority`` first (like Istio's failoverPriority tiers);
3. within a priority: same zone, then same region, then other regions
   (Envoy/Istio locality failover order);
4. within a (priority, locality) group: a weighted random order, so traffic
   splits by ``weight`` (weight 0: only when nothing else in the group is left).

Ejection: ``consecutive_failures`` connect failures in a row eject a cluster for
``base_ejection * 2**(ejections so far)``, capped at ``max_ejection`` (Envoy's
outlier detection: base_ejection_time 30 s, max_ejection_time 300 s); failures
while ejected are not counted. A success resets both counters.
"""

from __future__ import annotations

import enum
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from eastwest_gateway.routefile import Locality


class Health(enum.StrEnum):
    UNKNOWN = "unknown"
    UP = "up"
    DOWN = "down"


@dataclass(frozen=True, slots=True)
class Candidate:
    name: str
    locality: Locality
    ready_endpoints: int = 1
    health: Health = Health.UNKNOWN
    weight: int = 1
    priority: int = 0


@dataclass(frozen=True, slots=True)
class OutlierPolicy:
    consecutive_failures: int = 3
    base_ejection: float = 30.0
    max_ejection: float = 300.0


@dataclass(frozen=True, slots=True)
class OutlierState:
    consecutive_failures: int = 0
    ejections: int = 0
    ejected_until: float = 0.0

    def is_ejected(self, now: float) -> bool:
        return now < self.ejected_until


def record_failure(state: OutlierState, now: float, policy: OutlierPolicy) -> OutlierState:
    """One failed connect; ejects the cluster when the threshold is reached.

    A failure while the cluster is ejected changes nothing: it is an attempt that
    started before the ejection (or a last-resort try), and counting it would eject
    an ejected cluster again with a doubled backoff -- one partition would climb to
    the cap. Envoy likewise does not eject a host that is already ejected.
    """
    if state.is_ejected(now):
        return state
    failures = state.consecutive_failures + 1
    if failures < policy.consecutive_failures:
        return replace(state, consecutive_failures=failures)
    backoff = min(policy.base_ejection * 2**state.ejections, policy.max_ejection)
    return OutlierState(
        consecutive_failures=0, ejections=state.ejections + 1, ejected_until=now + backoff
    )


def record_success(state: OutlierState) -> OutlierState:
    return OutlierState() if state != OutlierState() else state


def uneject_on_probe(state: OutlierState, now: float) -> OutlierState:
    """A successful active probe lifts an ejection early.

    Envoy's ``successful_active_health_check_uneject_host`` (default true): when the
    peer's gateway answers a health probe again, it need not sit out the rest of a
    30 s+ ejection. The ejection count is kept, so a flapping peer still backs off.
    """
    if not state.is_ejected(now):
        return state
    return replace(state, consecutive_failures=0, ejected_until=now)


def locality_tier(caller: Locality, other: Locality) -> int:
    """0 same zone, 1 same region, 2 elsewhere."""
    if other.region != caller.region:
        return 2
    return 0 if other.zone == caller.zone else 1


def rank(
    caller: Locality,
    candidates: Sequence[Candidate],
    outliers: Mapping[str, OutlierState],
    now: float,
    rng: random.Random,
) -> tuple[Candidate, ...]:
    """Candidates in the order new connections should try them (see module doc)."""
    usable = [c for c in candidates if c.ready_endpoints > 0 and c.health is not Health.DOWN]
    fresh = [c for c in usable if not outliers.get(c.name, OutlierState()).is_ejected(now)]
    if not fresh:
        return tuple(sorted(usable, key=lambda c: outliers[c.name].ejected_until))

    def key(c: Candidate) -> tuple[int, int, float]:
        # Efraimidis-Spirakis weighted shuffle: sort by u^(1/w) descending.
        draw = rng.random() ** (1.0 / c.weight) if c.weight > 0 else -math.inf
        return (c.priority, locality_tier(caller, c.locality), -draw)

    return tuple(sorted(fresh, key=key))
