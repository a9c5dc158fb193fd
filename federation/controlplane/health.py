"""Gateway probe results -> a link's GatewayReachable/Ready conditions and gateway health.

Why this module exists: ReportHealth turns what each gateway sees of its peers
into status an operator reads (`meshfed` topology, dashboard) and the agents
use (a cluster with a down gateway leaves DNS answers). Pure: the link, the
probe and the time in; the new link out.

Kubernetes condition conventions (metav1.Condition): status True/False/Unknown,
a CamelCase reason, and a lastTransitionTime that moves only when the status
changes; re-reporting the same status changes the reason or message at most.

A link has one GatewayReachable condition but up to two directions (a's gateway
probing b's and, if bidirectional, b's probing a's), reported by different
gateways. So the condition's message keeps the latest result per direction, one
`<from>-><to>: up` or `<from>-><to>: down (<Reason>: <message>)` segment each, and
the status is derived from all of them: False if any direction is down, True if
one is up and none down, Unknown before any report. Without that, two gateways
disagreeing would flip the condition on every report.

Ready follows the other conditions: False if any of GatewayReachable,
CredentialsValid or Synced is False, True when GatewayReachable is True and
none is False, Unknown otherwise.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime

from federation.errors import ValidationError
from federation.model import Condition, Link, set_condition

REACHABLE = "GatewayReachable"
READY = "Ready"
# The conditions Ready summarises (DESIGN.md "Link").
READY_INPUTS = (REACHABLE, "CredentialsValid", "Synced")
DEFAULT_UP_REASON = "ProbeSucceeded"
DEFAULT_DOWN_REASON = "ProbeFailed"
# metav1.Condition reason syntax (apimachinery validation), as the model enforces.
_REASON = re.compile(r"[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?")
# metav1.Condition caps the message at 32768 bytes; one probe message gets 1 KiB
# so a link's two directions always fit.
MAX_PROBE_MESSAGE = 1024
_SEGMENT = re.compile(
    r"(?P<src>[a-z0-9-]+)->(?P<dst>[a-z0-9-]+): (?P<state>up|down)"
    r"(?: \((?P<reason>[A-Za-z0-9_,:]+)(?:: (?P<message>.*))?\))?"
)
_SEPARATOR = "; "


@dataclass(frozen=True, slots=True)
class Probe:
    """`reporter`'s gateway probed `peer`'s gateway."""

    reporter: str
    peer: str
    up: bool
    reason: str = ""
    message: str = ""

    def __post_init__(self) -> None:
        if self.reason and not _REASON.fullmatch(self.reason):
            raise ValidationError("reason", f"{self.reason!r} must be a CamelCase word")

    @property
    def effective_reason(self) -> str:
        return self.reason or (DEFAULT_UP_REASON if self.up else DEFAULT_DOWN_REASON)


@dataclass(frozen=True, slots=True)
class DirectionState:
    up: bool
    reason: str = ""
    message: str = ""


Direction = tuple[str, str]


def directions(link: Link) -> tuple[Direction, ...]:
    """Who probes whom on this link: an importer's gateway probes the exporter's."""
    out: tuple[Direction, ...] = ((link.a, link.b),)
    return (*out, (link.b, link.a)) if link.bidirectional else out


def _clean(message: str) -> str:
    """One line, no segment separator, bounded: it is embedded in a condition message."""
    flat = " ".join(message.replace(";", ",").split())
    return flat[:MAX_PROBE_MESSAGE]


def parse_directions(message: str) -> dict[Direction, DirectionState]:
    """The per-direction results kept in a GatewayReachable message (unknown text ignored)."""
    out: dict[Direction, DirectionState] = {}
    for segment in message.split(_SEPARATOR) if message else ():
        m = _SEGMENT.fullmatch(segment)
        if m:
            out[(m["src"], m["dst"])] = DirectionState(
                m["state"] == "up", m["reason"] or "", m["message"] or ""
            )
    return out


def format_directions(states: Mapping[Direction, DirectionState]) -> str:
    parts = []
    for (src, dst), st in sorted(states.items()):
        if st.up:
            parts.append(f"{src}->{dst}: up")
        else:
            detail = f"{st.reason}: {st.message}" if st.message else st.reason
            parts.append(f"{src}->{dst}: down ({detail})")
    return _SEPARATOR.join(parts)


def _reachable(states: Mapping[Direction, DirectionState], now: datetime) -> Condition:
    message = format_directions(states)
    down = [st for _, st in sorted(states.items()) if not st.up]
    if down:
        return Condition(REACHABLE, "False", down[0].reason or DEFAULT_DOWN_REASON, message, now)
    if states:
        return Condition(REACHABLE, "True", DEFAULT_UP_REASON, message, now)
    return Condition(REACHABLE, "Unknown", "AwaitingProbes", "no gateway has probed yet", now)


def ready(conditions: Iterable[Condition], now: datetime) -> Condition:
    """The Ready condition summarising the others."""
    held = {c.type: c for c in conditions}
    for kind in READY_INPUTS:
        c = held.get(kind)
        if c is not None and c.status == "False":
            return Condition(READY, "False", c.reason, f"{kind} is False: {c.message}", now)
    reach = held.get(REACHABLE)
    if reach is not None and reach.status == "True":
        return Condition(READY, "True", "LinkReady", "gateways reachable", now)
    return Condition(READY, "Unknown", "AwaitingProbes", f"{REACHABLE} is not known yet", now)


def apply_probe(link: Link, probe: Probe, now: datetime) -> Link:
    """The link after `probe`; unchanged directions keep their last result."""
    direction = (probe.reporter, probe.peer)
    if direction not in directions(link):
        raise ValidationError(
            "peer_cluster",
            f"link {link.key} does not carry traffic from {probe.reporter} to {probe.peer}",
        )
    current = link.condition(REACHABLE)
    states = parse_directions(current.message) if current else {}
    states = {d: s for d, s in states.items() if d in directions(link)}
    states[direction] = DirectionState(
        probe.up, "" if probe.up else probe.effective_reason, _clean(probe.message)
    )
    conditions = set_condition(link.conditions, _reachable(states, now))
    conditions = set_condition(conditions, ready(conditions, now))
    return replace(link, conditions=conditions)


def gateway_health(cluster: str, links: Iterable[Link]) -> bool | None:
    """Is `cluster`'s gateway up as its peers see it? Up if any peer reaches it, down if
    every peer that probed it failed, None if nobody probed it."""
    seen: list[bool] = []
    for link in links:
        cond = link.condition(REACHABLE)
        if cond is None:
            continue
        for (_, dst), st in parse_directions(cond.message).items():
            if dst == cluster:
                seen.append(st.up)
    if not seen:
        return None
    return any(seen)
