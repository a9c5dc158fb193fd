"""Work around records read from the store whose times are still strings.

Why this module exists: `Record.from_stored` skips validation and converts only
the time fields listed in `federation.model.base._STORED` ("created",
"credential_expiry"); the access records' times (`ApiToken.expires`,
`JoinToken.expires`, `CaMaterial.not_after`, `AuditEvent.time`) come back as
ISO strings. `dataclasses.replace` re-runs `__post_init__`, which parses them.
Remove this once the model lists those fields (reported to the lead).
"""

from __future__ import annotations

import dataclasses
from typing import TypeVar

from federation.model import Record

R = TypeVar("R", bound=Record)


def revalidated(record: R) -> R:
    """The same record, validated again (string times become datetimes)."""
    return dataclasses.replace(record)  # type: ignore[type-var]
