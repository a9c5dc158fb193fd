"""Bearer-token authentication and role checks as FastAPI dependencies.

Why this module exists: every route states what it needs (`Depends(reader)`,
`Depends(writer)`, `Depends(admin)`); the rules themselves are
`federation.registry.auth`'s. Failures raise `federation.errors` (InvalidToken ->
401, PermissionDenied -> 403) and errors.py shapes the response.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from federation.errors import InvalidToken
from federation.registry.auth import ADMIN, READ, WRITE, Principal
from federation.registry.service import Registry

_bearer = HTTPBearer(auto_error=False, description="`Authorization: Bearer <name>.<secret>`")


def registry_of(request: Request) -> Registry:
    registry: Registry = request.app.state.registry
    return registry


async def principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise InvalidToken("this endpoint needs `Authorization: Bearer <token>`")
    return await registry_of(request).tokens.authenticate(
        credentials.credentials, request.app.state.clock()
    )


def _needs(verb: str) -> Callable[[Principal], Awaitable[Principal]]:
    async def check(who: Annotated[Principal, Depends(principal)]) -> Principal:
        who.require(verb)
        return who

    return check


reader = _needs(READ)
writer = _needs(WRITE)
admin = _needs(ADMIN)

Reader = Annotated[Principal, Depends(reader)]
Writer = Annotated[Principal, Depends(writer)]
Admin = Annotated[Principal, Depends(admin)]
Reg = Annotated[Registry, Depends(registry_of)]
