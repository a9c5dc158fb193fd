"""/api/v1/clusters: cluster CRUD, join tokens and CA exports for mesh installs."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Body, Header, Query, Request, Response

from federation.api.auth import Admin, Reader, Reg, Writer
from federation.api.common import Continue, Limit, etag, existing_name, if_match, now, page
from federation.api.schemas import (
    CaExport,
    ClusterIn,
    ClusterOut,
    ClusterPatch,
    ImportOut,
    JoinTokenIn,
    JoinTokenInfo,
    JoinTokenOut,
    Page,
)
from federation.api.views import cluster_out, import_out
from federation.model import Cluster

router = APIRouter(prefix="/api/v1/clusters", tags=["clusters"])
NO_STORE = {"Cache-Control": "no-store"}  # RFC 9111 section 5.2.2.5: secrets in the body


@router.get("", response_model=Page[ClusterOut])
async def list_clusters(
    registry: Reg, _: Reader, limit: Limit = 100, continue_: Continue = None
) -> dict[str, Any]:
    items = [cluster_out(v) for v in await registry.list_clusters()]
    return page(items, lambda c: str(c["name"]), limit, continue_)


@router.post("", status_code=201, response_model=ClusterOut)
async def create_cluster(
    body: ClusterIn, request: Request, response: Response, registry: Reg, who: Writer
) -> dict[str, Any]:
    cluster = Cluster.from_dict(body.model_dump())
    created = await registry.create_cluster(cluster, who.name, now(request))
    response.headers["ETag"] = etag(created.revision)
    response.headers["Location"] = f"{router.prefix}/{cluster.name}"
    return cluster_out(created)


@router.get("/{name}", response_model=ClusterOut)
async def get_cluster(name: str, response: Response, registry: Reg, _: Reader) -> dict[str, Any]:
    found = await registry.get_cluster(existing_name("clusters", name))
    response.headers["ETag"] = etag(found.revision)
    return cluster_out(found)


@router.patch("/{name}", response_model=ClusterOut)
async def update_cluster(
    name: str,
    body: ClusterPatch,
    request: Request,
    response: Response,
    registry: Reg,
    who: Writer,
    if_match_: Annotated[str | None, Header(alias="If-Match")] = None,
) -> dict[str, Any]:
    revision = if_match(if_match_, body.revision)
    changes = body.model_dump(exclude_unset=True, exclude={"revision"})
    changes = {k: val for k, val in changes.items() if val is not None}
    updated = await registry.update_cluster(
        existing_name("clusters", name), changes, revision, who.name, now(request)
    )
    response.headers["ETag"] = etag(updated.revision)
    return cluster_out(updated)


@router.delete("/{name}", status_code=204)
async def delete_cluster(
    name: str,
    request: Request,
    registry: Reg,
    who: Writer,
    if_match_: Annotated[str | None, Header(alias="If-Match")] = None,
) -> Response:
    revision = if_match(if_match_, None)
    await registry.delete_cluster(existing_name("clusters", name), revision, who.name, now(request))
    return Response(status_code=204)


@router.post("/{name}/join-tokens", status_code=201, response_model=JoinTokenOut)
async def create_join_token(
    name: str,
    request: Request,
    response: Response,
    registry: Reg,
    who: Writer,
    body: Annotated[JoinTokenIn | None, Body()] = None,
) -> dict[str, Any]:
    """A bootstrap token for the cluster's agent and gateway, shown once: single use,
    or with `reusable` redeemable until it expires (gateway replicas, agent restarts)."""
    body = body or JoinTokenIn()
    ttl = None if body.ttl_seconds is None else timedelta(seconds=body.ttl_seconds)
    cluster = existing_name("clusters", name)
    token, expires = await registry.create_join_token(
        cluster, ttl, who.name, now(request), reusable=body.reusable
    )
    response.headers.update(NO_STORE)
    return {
        "cluster": cluster,
        "token": token,
        "id": token.partition(".")[0],
        "reusable": body.reusable,
        "expires": expires,
    }


@router.get("/{name}/join-tokens", response_model=Page[JoinTokenInfo])
async def list_join_tokens(
    name: str, registry: Reg, _: Writer, limit: Limit = 100, continue_: Continue = None
) -> dict[str, Any]:
    """The cluster's join tokens, expired ones too: ids, use counts and expiry, never
    the secrets. Editors (who mint them) may list them."""
    tokens = await registry.list_join_tokens(existing_name("clusters", name))
    items = [
        {"id": t.id, "reusable": t.reusable, "uses": t.uses, "used": t.used, "expires": t.expires}
        for t in tokens
    ]
    return page(items, lambda t: str(t["id"]), limit, continue_)


@router.delete("/{name}/join-tokens/{token_id}", status_code=204)
async def revoke_join_token(
    name: str, token_id: str, request: Request, registry: Reg, who: Writer
) -> Response:
    """Revoke a join token: it no longer joins (SVIDs it bought stay valid until they
    expire). 404 if the cluster has no such token."""
    cluster = existing_name("clusters", name)
    await registry.revoke_join_token(cluster, token_id, who.name, now(request))
    return Response(status_code=204)


@router.get("/{name}/imports", response_model=Page[ImportOut])
async def list_imports(
    name: str, registry: Reg, _: Reader, limit: Limit = 100, continue_: Continue = None
) -> dict[str, Any]:
    items = [import_out(i) for i in await registry.imports(existing_name("clusters", name))]
    return page(items, lambda i: f"{i['namespace']}/{i['name']}", limit, continue_)


@router.get("/{name}/ca", response_model=CaExport)
async def export_ca(
    name: str,
    response: Response,
    registry: Reg,
    _: Admin,
    format: Annotated[str, Query(pattern="^(istio|linkerd)$")] = "istio",
) -> dict[str, Any]:
    """The cluster's intermediate CA with its private key, as Istio or Linkerd files."""
    cluster = existing_name("clusters", name)
    await registry.get_cluster(cluster)
    files = await registry.trust.export_cluster_ca(cluster, format)
    response.headers.update(NO_STORE)
    return {"cluster": cluster, "format": format, "files": files}
