"""Health of peer gateways as seen by their probes (pure state machine).

Why it exists: the issue fixes the rules -- a new link starts UNKNOWN, one
successful probe makes it UP, three failures in a row make it DOWN -- and the
ranker consumes the result. Keeping the rule pure makes it testable without
timers; :mod:`eastwest_gateway.probe` supplies the real probes.
"""

from __future__ import annotations

from dataclasses import dataclass

from eastwest_gateway.ranking import Health

UP_AFTER_SUCCESSES = 1  # issue 5: "up after 1 success"
DOWN_AFTER_FAILURES = 3  # issue 5: "down after 3 failures"


@dataclass(frozen=True, slots=True)
class ProbeState:
    health: Health = Health.UNKNOWN
    consecutive_failures: int = 0
    consecutive_successes: int = 0


def observe(state: ProbeState, ok: bool) -> ProbeState:
    """The state after one probe result."""
    if ok:
        successes = state.consecutive_successes + 1
        health = Health.UP if successes >= UP_AFTER_SUCCESSES else state.health
        return ProbeState(health=health, consecutive_successes=successes)
    failures = state.consecutive_failures + 1
    health = Health.DOWN if failures >= DOWN_AFTER_FAILURES else state.health
    return ProbeState(health=health, consecutive_failures=failures)
