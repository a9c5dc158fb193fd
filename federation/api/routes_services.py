"""/api/v1/services, /gateways and /topology: what the federation looks like (read-only)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from federation.api.auth import Reader, Reg
from federation.api.common import Continue, Limit, existing_name, page
from federation.api.schemas import GatewayOut, Page, ServiceDetail, ServiceOut, TopologyOut
from federation.api.views import gateway_out, service_detail, service_out, topology_out
from federation.registry import pages

router = APIRouter(prefix="/api/v1", tags=["services"])


@router.get("/services", response_model=Page[ServiceOut])
async def list_services(
    registry: Reg,
    _: Reader,
    cluster: Annotated[str | None, Query(description="only services this cluster exports")] = None,
    namespace: Annotated[str | None, Query()] = None,
    limit: Limit = 100,
    continue_: Continue = None,
) -> dict[str, Any]:
    """Exported services in key order, paged at the store (a page reads about `limit`
    exports, however many the federation holds)."""
    if namespace is not None:
        namespace = existing_name("namespaces", namespace)
    after = pages.decode_token(continue_) if continue_ else None
    found, more = await registry.list_services_page(cluster, namespace, after, limit)
    items = [service_out(s) for s in found]
    last = f"{found[-1].service}" if found else None
    return {"items": items, "continue": pages.encode_token(last) if more and last else None}


@router.get("/services/{namespace}/{name}", response_model=ServiceDetail)
async def get_service(namespace: str, name: str, registry: Reg, _: Reader) -> dict[str, Any]:
    summary = await registry.get_service(
        existing_name("services", namespace), existing_name("services", name)
    )
    return service_detail(summary)


@router.get("/gateways", response_model=Page[GatewayOut])
async def list_gateways(
    registry: Reg, _: Reader, limit: Limit = 100, continue_: Continue = None
) -> dict[str, Any]:
    items = [gateway_out(v) for v in await registry.list_gateways()]
    return page(items, lambda g: str(g["cluster"]), limit, continue_)


@router.get("/topology", response_model=TopologyOut)
async def topology(registry: Reg, _: Reader) -> dict[str, Any]:
    return topology_out(await registry.topology())
