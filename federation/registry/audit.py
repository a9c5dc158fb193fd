"""The audit trail: one `AuditEvent` per change, written in the change's own transaction.

Why this module exists: "who changed what, when" is only trustworthy if an event
cannot be lost when the change succeeds, nor recorded when it fails; so events
are store operations the service adds to the same `commit` as the change.
Event ids start with the time in nanoseconds (20 digits cover until year 5138),
so the store's key order is time order.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

from federation.model import AuditEvent
from federation.store.backend import ABSENT, Put
from federation.store.typed import encode, storage_key

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EVENT_RANDOM_BYTES = 4  # the model's id format: <20 digits>-<8 hex>


def event_id(now: datetime) -> str:
    nanos = (now - _EPOCH) // timedelta(microseconds=1) * 1000
    return f"{nanos:020d}-{secrets.token_hex(_EVENT_RANDOM_BYTES)}"


def event(
    now: datetime, actor: str, action: str, kind: str, target: str, detail: str = ""
) -> AuditEvent:
    return AuditEvent(
        id=event_id(now),
        time=now,
        actor=actor,
        action=action,
        target_kind=kind,
        target=target,
        detail=detail,
    )


def put(ev: AuditEvent) -> Put:
    """The store operation that records `ev` (fails rather than overwrite another event)."""
    return Put(storage_key(AuditEvent.KIND, ev.key), encode(ev), ABSENT)
