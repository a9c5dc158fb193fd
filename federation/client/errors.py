"""gRPC status -> federation errors, once, where the client meets the wire.

Callers of `federation.client` (agents, gateways) catch the same exceptions the
registry raised: `InvalidToken`, `PermissionDenied`, `NotFound`, `ValidationError`
(with the field the registry named). What has no domain meaning gets a class of
its own here: `RegistryUnavailable` (retry with backoff) and `RegistryError`.
"""

from __future__ import annotations

from typing import Any

import grpc  # type: ignore[import-untyped]

from federation.errors import FederationError, InvalidToken, NotFound, PermissionDenied
from federation.errors import ValidationError as ValidationError

FIELD_METADATA = "meshfed-field"  # federation.controlplane.status.FIELD_METADATA


class RegistryError(FederationError):
    """The registry refused or failed a call; `code` is the gRPC status code name."""

    def __init__(self, code: str, details: str) -> None:
        super().__init__(f"{code}: {details}")
        self.code = code
        self.details = details


class RegistryUnavailable(RegistryError):
    """The registry could not be reached or is shutting down: retry with backoff."""


class StreamAborted(RegistryError):
    """The registry ended a stream it cannot continue (e.g. its lease expired): start over."""


def translate(exc: Any) -> FederationError:
    """The federation error for a `grpc.aio.AioRpcError`."""
    code = exc.code()
    details = exc.details() or ""
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return InvalidToken(details)
    if code == grpc.StatusCode.PERMISSION_DENIED:
        return PermissionDenied(details)
    if code == grpc.StatusCode.NOT_FOUND:
        return NotFound(details)
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        trailing = dict(exc.trailing_metadata() or ())
        field = str(trailing.get(FIELD_METADATA, "request"))
        message = details.removeprefix(f"{field}: ")
        return ValidationError(field, message)
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return RegistryUnavailable(code.name, details)
    if code == grpc.StatusCode.ABORTED:
        return StreamAborted(code.name, details)
    return RegistryError(code.name, details)
