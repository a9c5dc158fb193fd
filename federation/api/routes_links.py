"""/api/v1/links: which clusters exchange exports, and the links' status conditions."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Request, Response

from federation.api.auth import Reader, Reg, Writer
from federation.api.common import Continue, Limit, etag, existing_name, if_match, now, page
from federation.api.schemas import LinkIn, LinkOut, LinkPatch, Page
from federation.api.views import link_out
from federation.model import Link

router = APIRouter(prefix="/api/v1/links", tags=["links"])


@router.get("", response_model=Page[LinkOut])
async def list_links(
    registry: Reg, _: Reader, limit: Limit = 100, continue_: Continue = None
) -> dict[str, Any]:
    items = [link_out(v) for v in await registry.list_links()]
    return page(items, lambda link: f"{link['a']}/{link['b']}", limit, continue_)


@router.post("", status_code=201, response_model=LinkOut)
async def create_link(
    body: LinkIn, request: Request, response: Response, registry: Reg, who: Writer
) -> dict[str, Any]:
    link = Link.from_dict(body.model_dump())
    created = await registry.create_link(link, who.name, now(request))
    response.headers["ETag"] = etag(created.revision)
    response.headers["Location"] = f"{router.prefix}/{link.a}/{link.b}"
    return link_out(created)


@router.get("/{a}/{b}", response_model=LinkOut)
async def get_link(a: str, b: str, registry: Reg, _: Reader) -> dict[str, Any]:
    return link_out(await registry.get_link(existing_name("links", a), existing_name("links", b)))


@router.patch("/{a}/{b}", response_model=LinkOut)
async def update_link(
    a: str,
    b: str,
    body: LinkPatch,
    request: Request,
    response: Response,
    registry: Reg,
    who: Writer,
    if_match_: Annotated[str | None, Header(alias="If-Match")] = None,
) -> dict[str, Any]:
    """Record the expiry of the link's credential; sets CredentialsValid accordingly."""
    updated = await registry.set_link_credential(
        existing_name("links", a),
        existing_name("links", b),
        body.credential_expiry,
        if_match(if_match_, body.revision),
        who.name,
        now(request),
    )
    response.headers["ETag"] = etag(updated.revision)
    return link_out(updated)


@router.delete("/{a}/{b}", status_code=204)
async def delete_link(a: str, b: str, request: Request, registry: Reg, who: Writer) -> Response:
    await registry.delete_link(
        existing_name("links", a), existing_name("links", b), who.name, now(request)
    )
    return Response(status_code=204)
