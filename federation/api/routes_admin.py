"""/api/v1/tokens (admin) and /api/v1/events (the audit trail)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Request, Response

from federation.api.auth import Admin, Reader, Reg
from federation.api.common import Continue, Limit, existing_name, now, page
from federation.api.schemas import EventOut, NewTokenOut, Page, TokenIn, TokenOut
from federation.api.views import event_out, token_out
from federation.model import validation as v

router = APIRouter(prefix="/api/v1", tags=["access"])


@router.post("/tokens", status_code=201, response_model=NewTokenOut)
async def create_token(
    body: TokenIn, request: Request, response: Response, registry: Reg, who: Admin
) -> dict[str, Any]:
    """A new API token with one role; the token string is in this response only."""
    name = v.dns1123_label("name", body.name)
    ttl = None if body.ttl_seconds is None else timedelta(seconds=body.ttl_seconds)
    record, bearer = await registry.create_token(name, body.role, ttl, who.name, now(request))
    response.headers["Cache-Control"] = "no-store"
    return {**token_out(record), "token": bearer}


@router.get("/tokens", response_model=Page[TokenOut])
async def list_tokens(
    registry: Reg, _: Admin, limit: Limit = 100, continue_: Continue = None
) -> dict[str, Any]:
    items = [token_out(t) for t in await registry.list_tokens()]
    return page(items, lambda t: str(t["name"]), limit, continue_)


@router.delete("/tokens/{name}", status_code=204)
async def delete_token(name: str, request: Request, registry: Reg, who: Admin) -> Response:
    await registry.delete_token(existing_name("tokens", name), who.name, now(request))
    return Response(status_code=204)


@router.get("/events", response_model=Page[EventOut])
async def list_events(
    registry: Reg, _: Reader, limit: Limit = 100, continue_: Continue = None
) -> dict[str, Any]:
    """Who changed what, when: oldest first; page with `continue`."""
    items = [event_out(e) for e in await registry.list_events()]
    return page(items, lambda e: str(e["id"]), limit, continue_)
