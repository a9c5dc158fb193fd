"""Small helpers shared by the route modules: time, paging parameters, revisions.

Why this module exists: every list pages the same way and every write reads the
clock and the optimistic-concurrency revision the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Annotated, TypeVar

from fastapi import Query, Request

from federation.errors import NotFound, ValidationError
from federation.model import validation as v
from federation.registry import pages

T = TypeVar("T")

Limit = Annotated[
    int, Query(ge=1, le=pages.MAX_LIMIT, description="page size (default 100, max 500)")
]
Continue = Annotated[
    str | None, Query(alias="continue", description="token from the previous page")
]


def now(request: Request) -> datetime:
    current: datetime = request.app.state.clock()
    return current


def page(
    items: Sequence[T], key: Callable[[T], str], limit: int, token: str | None
) -> dict[str, object]:
    """`{"items": [...], "continue": token}` for a list, items as the caller renders them."""
    result = pages.paginate(items, key, limit, token)
    return {"items": list(result.items), "continue": result.next}


def existing_name(kind: str, name: str) -> str:
    """A path name that cannot name a record (not an RFC 1123 label) is simply not found."""
    try:
        return v.dns1123_label("name", name)
    except ValidationError:
        raise NotFound(f"{kind}/{name}") from None


def if_match(header: str | None, body_revision: int | None) -> int | None:
    """The revision a write must find: an `If-Match: "<rev>"` header or the body's `revision`."""
    if header is None:
        return body_revision
    text = header.strip()
    if text.startswith("W/"):
        text = text[2:]
    text = text.strip('"')
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) < 2**63:
        raise ValidationError("If-Match", f'{header!r} is not a revision ("<number>")')
    revision = int(text)
    if body_revision is not None and body_revision != revision:
        raise ValidationError("revision", "differs from the If-Match header")
    return revision


def etag(revision: int) -> str:
    return f'"{revision}"'
