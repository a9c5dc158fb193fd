"""Every error the API returns is RFC 9457 problem+json, translated here once.

Why this module exists: clients (the dashboard, Terraform, curl users) branch on
one error shape. Each `federation.errors` class maps to one HTTP status and one
machine-readable `reason`; validation errors also name the `field`. FastAPI's own
errors (request validation, unknown routes, wrong methods) get the same shape.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from federation.errors import (
    AlreadyExists,
    AuthError,
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
from federation.store.typed import ROOT

PROBLEM = "application/problem+json"
log = logging.getLogger("meshfed.api")

# (exception class, HTTP status, reason, title); first match wins, so subclasses first.
ERROR_TABLE: tuple[tuple[type[Exception], int, str, str], ...] = (
    (InvalidToken, 401, "Unauthorized", "Missing or invalid bearer token"),
    (PermissionDenied, 403, "Forbidden", "Not allowed for this role"),
    (AuthError, 403, "Forbidden", "Not allowed"),
    (ValidationError, 422, "Invalid", "Invalid request"),
    (NotFound, 404, "NotFound", "Not found"),
    (AlreadyExists, 409, "AlreadyExists", "Already exists"),
    (Conflict, 409, "Conflict", "Stale revision"),
    (LeaseNotFound, 409, "LeaseExpired", "Lease expired"),
    (Compacted, 410, "Compacted", "History compacted"),
    (StoreUnavailable, 503, "StoreUnavailable", "Store unavailable"),
)
_HTTP_REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    406: "NotAcceptable",
    409: "Conflict",
    413: "PayloadTooLarge",
    415: "UnsupportedMediaType",
    422: "Invalid",
}


def problem(
    status: int,
    title: str,
    detail: str,
    reason: str,
    request: Request | None = None,
    **extra: Any,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": f"https://meshfed.dev/problems/{reason}",  # documented in docs/api.md
        "title": title,
        "status": status,
        "detail": detail,
        "reason": reason,
    }
    if request is not None:
        body["instance"] = request.url.path
    body.update(extra)
    headers = {"WWW-Authenticate": 'Bearer realm="meshfed"'} if status == 401 else None
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def _readable(message: str) -> str:
    """Store keys in messages read as `clusters/east`, not `/meshfed/clusters/east`."""
    return message.replace(ROOT, "")


async def federation_error(request: Request, exc: Exception) -> JSONResponse:
    for cls, status, reason, title in ERROR_TABLE:
        if isinstance(exc, cls):
            extra: dict[str, Any] = {}
            if isinstance(exc, ValidationError):
                extra["field"] = exc.field
            return problem(status, title, _readable(str(exc)), reason, request, **extra)
    log.error("unexpected registry error on %s: %s", request.url.path, exc)
    return problem(500, "Registry error", _readable(str(exc)), "InternalError", request)


def _field_of(loc: Sequence[Any]) -> str:
    parts = list(loc)
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "body"


async def request_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    first = errors[0] if errors else {"loc": ("body",), "msg": "invalid request"}
    field = _field_of(first.get("loc", ("body",)))
    invalid = [
        {"field": _field_of(e.get("loc", ())), "message": str(e.get("msg", ""))} for e in errors
    ]
    detail = f"{field}: {first.get('msg', 'invalid')}"
    return problem(422, "Invalid request", detail, "Invalid", request, field=field, errors=invalid)


async def http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    reason = _HTTP_REASONS.get(exc.status_code, "Error")
    response = problem(exc.status_code, reason, str(exc.detail), reason, request)
    if exc.headers:
        response.headers.update(exc.headers)
    return response


async def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s", request.url.path, exc_info=exc)
    return problem(500, "Internal error", "unexpected server error", "InternalError", request)


def install(app: FastAPI) -> None:
    app.add_exception_handler(FederationError, federation_error)
    app.add_exception_handler(RequestValidationError, request_validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, unexpected_error)
