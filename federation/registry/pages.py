"""List pagination with an opaque continue token, the way Kubernetes lists page.

Why this module exists: every list endpoint pages the same way, and clients must
not build continue tokens themselves (so the encoding can change). The token is
the last returned key, base64url-encoded; the next page starts after it. Keys
sort in the store's order, so pages are stable while records are added.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from federation.errors import ValidationError

T = TypeVar("T")

DEFAULT_LIMIT = 100
# Kubernetes' apiserver caps nothing, but kubectl's default chunk size is 500;
# a page larger than that is a list a dashboard should not ask for at once.
MAX_LIMIT = 500


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: tuple[T, ...]
    next: str | None  # continue token for the next page; None on the last page


def encode_token(key: str) -> str:
    return base64.urlsafe_b64encode(key.encode()).decode().rstrip("=")


def decode_token(token: str) -> str:
    try:
        padded = token + "=" * (-len(token) % 4)
        key = base64.b64decode(padded.encode("ascii"), altchars=b"-_", validate=True).decode()
    except (binascii.Error, UnicodeError, ValueError):
        key = ""
    if not key:
        raise ValidationError("continue", "is not a continue token from this API")
    return key


def paginate(
    items: Sequence[T], key: Callable[[T], str], limit: int, continue_: str | None
) -> Page[T]:
    """The page of `items` (any order) after the `continue_` token, at most `limit` long."""
    if not 1 <= limit <= MAX_LIMIT:
        raise ValidationError("limit", f"{limit} is outside 1-{MAX_LIMIT}")
    ordered = sorted(items, key=key)
    if continue_:
        after = decode_token(continue_)
        ordered = [i for i in ordered if key(i) > after]
    page = ordered[:limit]
    more = len(ordered) > limit
    return Page(tuple(page), encode_token(key(page[-1])) if more and page else None)
