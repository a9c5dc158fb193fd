"""Dashboard API tokens and roles: who the caller is and what the role allows.

Why this module exists: authentication (bearer token -> principal) and
authorization (role -> allowed verbs) are decided here once, with no web
framework, so the REST API, the CLI and tests apply the same rules.

Bearer tokens are `<name>.<secret>`; the store keeps only sha256(secret), and
the name finds the record without scanning. Roles, from least to most:
viewer (read), editor (read and change the federation), admin (also tokens,
and CA private keys for mesh installs).

A token may also be made outside the registry and handed to it: `meshfed install`
generates `install-admin.<secret>` into a Kubernetes Secret, and every registry
replica stores it at start (`meshfed serve --admin-token-file`, `ensure_token`):
create-if-absent, or replace a record with another secret, each a compare-and-swap,
so replicas starting at once agree.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from federation.errors import (
    AlreadyExists,
    Conflict,
    InvalidToken,
    NotFound,
    PermissionDenied,
    ValidationError,
)
from federation.install import admin_token
from federation.model import ApiToken
from federation.registry import audit
from federation.registry.records import put_op
from federation.registry.trust import digest, split_token
from federation.store import Store, Versioned
from federation.store.backend import ABSENT

READ, WRITE, ADMIN = "read", "write", "admin"
ALLOWED: dict[str, frozenset[str]] = {
    "viewer": frozenset({READ}),
    "editor": frozenset({READ, WRITE}),
    "admin": frozenset({READ, WRITE, ADMIN}),
}
# 256-bit secrets (RFC 4086 section 8 strength for keys).
SECRET_BYTES = 32
# Replicas starting at once each try this often to store a token file's token.
ENSURE_ATTEMPTS = 10


@dataclass(frozen=True, slots=True)
class Bearer:
    """A bearer token as `<name>.<secret>` parts (the secret is never shown)."""

    name: str
    secret: str = field(repr=False)


def parse_bearer(text: str) -> Bearer:
    """A token file's content (`<name>.<secret>`, surrounding whitespace ignored; the
    shape `meshfed install` generates, federation/install/admin_token.py). ValueError
    otherwise; its message never quotes the content."""
    name, secret = admin_token.split(text)
    return Bearer(name, secret)


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller: the token's name is the actor in the audit trail."""

    name: str
    role: str

    def require(self, verb: str) -> None:
        if verb not in ALLOWED.get(self.role, frozenset()):
            raise PermissionDenied(f"role {self.role!r} may not {verb}")


class TokenService:
    """Creates and checks API tokens."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def new_token(
        self, name: str, role: str, now: datetime, ttl: timedelta | None = None
    ) -> tuple[ApiToken, str]:
        """A token record and its bearer string (shown once, never stored)."""
        if ttl is not None and ttl <= timedelta(0):
            raise ValidationError("ttl_seconds", "must be positive")
        secret = secrets.token_urlsafe(SECRET_BYTES)
        record = ApiToken(
            name=name,
            role=role,
            secret_sha256=digest(secret),
            created=now,
            expires=None if ttl is None else now + ttl,
        )
        return record, f"{name}.{secret}"

    async def authenticate(self, bearer: str, now: datetime) -> Principal:
        """The principal of a bearer token; InvalidToken if unknown, wrong or expired."""
        name, secret = split_token(bearer)
        try:
            held: Versioned[ApiToken] = await self._store.tokens.get(name)
        except (NotFound, ValidationError):
            raise InvalidToken("unknown token") from None
        record = held.record
        if not hmac.compare_digest(record.secret_sha256, digest(secret)):
            raise InvalidToken("unknown token")
        if record.expires is not None and now >= record.expires:
            raise InvalidToken("token expired")
        return Principal(record.name, record.role)

    async def ensure_token(
        self, bearer: Bearer, role: str, actor: str, now: datetime
    ) -> Literal["created", "unchanged", "replaced"]:
        """Make `bearer` a valid token of `role` (no expiry): create its record if absent,
        replace one with another secret, role or expiry, else nothing. Each write is a
        compare-and-swap on what was read; a lost race (another replica wrote first)
        reads again. Audited as `actor`."""
        wanted = digest(bearer.secret)
        for _ in range(ENSURE_ATTEMPTS):
            try:
                held: Versioned[ApiToken] | None = await self._store.tokens.get(bearer.name)
            except NotFound:
                held = None
            if held is not None:
                have = held.record
                same = hmac.compare_digest(have.secret_sha256, wanted)
                if same and have.role == role and have.expires is None:
                    return "unchanged"
            record = ApiToken(name=bearer.name, role=role, secret_sha256=wanted, created=now)
            action: Literal["created", "replaced"] = "created" if held is None else "replaced"
            event = audit.event(
                now, actor, "create" if held is None else "update", ApiToken.KIND, bearer.name
            )
            expect = ABSENT if held is None else held.revision
            try:
                await self._store.commit([put_op(record, expect), audit.put(event)])
            except (AlreadyExists, Conflict):
                continue  # another replica wrote it in between: read it again
            return action
        raise Conflict(f"{ApiToken.KIND}/{bearer.name}", -1, None)
