"""federation errors -> gRPC status, once, at the boundary; never a traceback on the wire.

Why this module exists: the servicers raise the domain's own exceptions
(`federation.errors`, `trust_bundle` errors); gRPC callers need status codes.
`status_of` is the pure table; `boundary` is the async context manager each
servicer method runs in. Anything unexpected is logged here with its traceback
and a reference, and the caller sees INTERNAL with only that reference.

INVALID_ARGUMENT names the field in the details ("field: message") and in the
trailing metadata key `meshfed-field`, which `federation.client` reads back.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import grpc  # type: ignore[import-untyped]

from federation.errors import (
    AlreadyExists,
    Compacted,
    Conflict,
    FederationError,
    InvalidToken,
    LeaseNotFound,
    NotFound,
    PermissionDenied,
    StoreUnavailable,
    ValidationError,
)
from trust_bundle import InvalidCSR, NotEntitled, TrustError

log = logging.getLogger("meshfed.controlplane")

FIELD_METADATA = "meshfed-field"


@dataclass(frozen=True, slots=True)
class Status:
    code: Any  # grpc.StatusCode (grpc ships no type information)
    details: str
    field: str | None = None

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return () if self.field is None else ((FIELD_METADATA, self.field),)


# Most specific first: the first matching class decides.
_TABLE: tuple[tuple[type[BaseException], Any], ...] = (
    (InvalidToken, grpc.StatusCode.UNAUTHENTICATED),
    (PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
    (NotEntitled, grpc.StatusCode.PERMISSION_DENIED),
    (NotFound, grpc.StatusCode.NOT_FOUND),
    (AlreadyExists, grpc.StatusCode.ALREADY_EXISTS),
    (Conflict, grpc.StatusCode.ABORTED),
    # The stream's lease expired (the store was away longer than its TTL): the
    # agent must reconnect and send its full state again.
    (LeaseNotFound, grpc.StatusCode.ABORTED),
    (Compacted, grpc.StatusCode.ABORTED),
    (StoreUnavailable, grpc.StatusCode.UNAVAILABLE),
)


def status_of(exc: BaseException) -> Status | None:
    """The status for a domain error; None for anything unexpected (a bug)."""
    if isinstance(exc, ValidationError):
        return Status(grpc.StatusCode.INVALID_ARGUMENT, str(exc), exc.field)
    if isinstance(exc, InvalidCSR):
        return Status(grpc.StatusCode.INVALID_ARGUMENT, f"csr_pem: {exc}", "csr_pem")
    for cls, code in _TABLE:
        if isinstance(exc, cls):
            return Status(code, str(exc))
    return None


def internal(exc: BaseException, method: str) -> Status:
    """Log an unexpected failure with its traceback; the caller gets only a reference."""
    ref = secrets.token_hex(4)
    log.error("%s failed (ref %s)", method, ref, exc_info=exc)
    if isinstance(exc, FederationError | TrustError):
        return Status(grpc.StatusCode.INTERNAL, f"registry error (ref {ref}): {type(exc).__name__}")
    return Status(grpc.StatusCode.INTERNAL, f"internal error (ref {ref})")


@asynccontextmanager
async def boundary(context: Any, method: str) -> AsyncIterator[None]:
    """Run a servicer body; translate what it raises into an aborted call."""
    try:
        yield
    except grpc.aio.AbortError:
        raise  # already aborted with a status
    except Exception as exc:  # the boundary: every error becomes a status here
        status = status_of(exc) or internal(exc, method)
        if status.code != grpc.StatusCode.INTERNAL:
            log.info("%s refused: %s %s", method, status.code.name, status.details)
        await context.abort(status.code, status.details, status.metadata)
