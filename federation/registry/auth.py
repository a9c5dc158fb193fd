"""Dashboard API tokens and roles: who the caller is and what the role allows.

Why this module exists: authentication (bearer token -> principal) and
authorization (role -> allowed verbs) are decided here once, with no web
framework, so the REST API, the CLI and tests apply the same rules.

Bearer tokens are `<name>.<secret>`; the store keeps only sha256(secret), and
the name finds the record without scanning. Roles, from least to most:
viewer (read), editor (read and change the federation), admin (also tokens,
and CA private keys for mesh installs).
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from federation.errors import InvalidToken, NotFound, PermissionDenied, ValidationError
from federation.model import ApiToken
from federation.registry.trust import digest, split_token
from federation.store import Store, Versioned

READ, WRITE, ADMIN = "read", "write", "admin"
ALLOWED: dict[str, frozenset[str]] = {
    "viewer": frozenset({READ}),
    "editor": frozenset({READ, WRITE}),
    "admin": frozenset({READ, WRITE, ADMIN}),
}
# 256-bit secrets (RFC 4086 section 8 strength for keys).
SECRET_BYTES = 32


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
