"""The registry's exception tree.

Every error the federation package raises on purpose derives from `FederationError`,
so callers (the API, the CLI) can catch one root and turn it into an HTTP 4xx or an
exit code. Foreign exceptions (SQLAlchemy, etcd, grpc) are translated once, at the
store boundary, with `raise ... from`.
"""

from __future__ import annotations


class FederationError(Exception):
    """Root of every error raised by the `federation` package."""


class ValidationError(FederationError, ValueError):
    """A domain object was given a bad value; `field` names which one."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class StoreError(FederationError):
    """The store failed in a way the caller cannot fix by changing its request."""


class StoreUnavailable(StoreError):
    """The store's server could not be reached (connection refused, timed out)."""


class NotFound(StoreError):
    """The record does not exist."""

    def __init__(self, key: str) -> None:
        super().__init__(f"not found: {key}")
        self.key = key


class AlreadyExists(StoreError):
    """`create` of a record whose key is already taken."""

    def __init__(self, key: str) -> None:
        super().__init__(f"already exists: {key}")
        self.key = key


class Conflict(StoreError):
    """An update or delete named a revision that is no longer the record's current one."""

    def __init__(self, key: str, expected: int, actual: int | None) -> None:
        got = "deleted" if actual is None else f"at revision {actual}"
        super().__init__(f"conflict on {key}: expected revision {expected}, record is {got}")
        self.key = key
        self.expected = expected
        self.actual = actual


class LeaseNotFound(StoreError):
    """The lease expired or was revoked; records can no longer be attached to it."""

    def __init__(self, lease_id: int) -> None:
        super().__init__(f"lease {lease_id} not found (expired or revoked)")
        self.lease_id = lease_id


class Compacted(StoreError):
    """A watch asked for history that compaction has removed; resync from a snapshot."""

    def __init__(self, requested: int, compact_revision: int) -> None:
        super().__init__(
            f"revision {requested} is compacted (history starts after {compact_revision})"
        )
        self.requested = requested
        self.compact_revision = compact_revision


class ListenFailed(FederationError):
    """A server could not bind its address (in use, not local, no permission)."""


class BadStoreURL(FederationError, ValueError):
    """The `--store` URL names an unknown scheme or is malformed."""


class AuthError(FederationError):
    """The caller could not be authenticated or is not allowed to do this."""


class InvalidToken(AuthError):
    """A bearer or join token is unknown, expired, already used, or malformed."""


class PermissionDenied(AuthError):
    """The caller is authenticated but its role or identity may not do this."""
