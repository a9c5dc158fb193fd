"""Status conditions meshfed writes on MCS objects (pure).

ServiceExport conditions follow the MCS API (mcs-api `serviceexport.go`):
`Valid` (the Service exists and can be exported), `Ready` (the export reached the
registry) and `Conflict` (MCS KEP-1645 "Constraints and Conflict Resolution": when
exporting clusters disagree on a port, the oldest export wins and the others are
flagged). `merge` keeps a condition's `lastTransitionTime` while its status stays
the same, so rewriting the same conditions is a no-op and never bumps the object.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from discovery_sync.sources.kube import (
    CONFLICT,
    READY,
    REASON_NO_CONFLICTS,
    REASON_PENDING,
    REASON_PORT_CONFLICT,
    REASON_READY,
)
from federation.model import Condition, ServiceExport


def conflict(local: ServiceExport, others: Iterable[ServiceExport], now: datetime) -> Condition:
    """Does `local` lose a port disagreement to an older export of another cluster?"""
    lost: list[str] = []
    for other in sorted(others, key=lambda e: (e.created, e.cluster)):
        if other.cluster == local.cluster or (other.created, other.cluster) > (
            local.created,
            local.cluster,
        ):
            continue
        theirs = {(p.port, p.protocol): p for p in other.ports}
        for port in local.ports:
            held = theirs.get((port.port, port.protocol))
            if held is not None and held != port:
                lost.append(
                    f"port {port.port}/{port.protocol} is {held.name or '-'} in the older "
                    f"export of cluster {other.cluster}"
                )
    if lost:
        return Condition(CONFLICT, "True", REASON_PORT_CONFLICT, "; ".join(lost), now)
    return Condition(CONFLICT, "False", REASON_NO_CONFLICTS, "no conflicting exports", now)


def ready(exported: bool, now: datetime) -> Condition:
    if exported:
        return Condition(READY, "True", REASON_READY, "exported to the clusterset", now)
    return Condition(READY, "False", REASON_PENDING, "not yet reported to the registry", now)


def to_k8s(cond: Condition) -> dict[str, Any]:
    return {
        "type": cond.type,
        "status": cond.status,
        "reason": cond.reason,
        "message": cond.message,
        "lastTransitionTime": cond.last_transition_time.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def merge(
    existing: Iterable[Mapping[str, Any]], desired: Iterable[Condition]
) -> list[dict[str, Any]] | None:
    """The new `status.conditions`, or None when nothing would change."""
    old = {str(c.get("type")): dict(c) for c in existing if isinstance(c, Mapping)}
    out = dict(old)
    for cond in desired:
        new = to_k8s(cond)
        prev = old.get(cond.type)
        if prev is not None and prev.get("status") == new["status"]:
            new["lastTransitionTime"] = prev.get("lastTransitionTime", new["lastTransitionTime"])
        out[cond.type] = new
    merged = [out[k] for k in sorted(out)]
    return None if merged == [old[k] for k in sorted(old)] else merged
