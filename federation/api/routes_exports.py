"""/api/v1/clusters/{cluster}/exports/{namespace}/{name}: static exports (VMs, static clusters).

Why this module exists: a cluster without an agent (VMs, bare metal, a cluster
the platform team describes in Terraform) still exports services. These routes
write what an agent would report, without a lease (nothing keeps it alive, so
nothing expires it): the export and its whole endpoint set, replaced in one
transaction with the audit event. Records an agent holds under its lease are
the agent's; a static write over them answers 409 `HeldByAgent`.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Request, Response

from federation.api.auth import Reader, Reg, Writer
from federation.api.common import etag, existing_name, if_match, now
from federation.api.errors import problem
from federation.api.schemas import ExportDetail, ExportIn
from federation.api.views import endpoint_out, ports_out
from federation.registry.records import ExportState
from federation.registry.service import HeldByAgent

router = APIRouter(prefix="/api/v1/clusters", tags=["exports"])
PATH = "/{cluster}/exports/{namespace}/{name}"
HELD: dict[int | str, dict[str, Any]] = {
    409: {
        "description": "stale revision, or the cluster's agent holds this export "
        "(reason `HeldByAgent`)"
    }
}


def export_out(state: ExportState) -> dict[str, Any]:
    e = state.export.record
    return {
        "cluster": e.cluster,
        "namespace": e.namespace,
        "name": e.name,
        "created": e.created,
        "ports": ports_out(e.ports),
        "scope": list(e.scope),
        "endpoints": [
            {**endpoint_out(v.record), "zone": v.record.zone}
            for v in sorted(state.endpoints, key=lambda v: v.record.address)
        ],
        "managed_by": "agent" if state.leased else "static",
        "revision": state.export.revision,
    }


def held(exc: HeldByAgent, request: Request) -> Response:
    return problem(409, "Held by the cluster's agent", str(exc), "HeldByAgent", request)


@router.get(PATH, response_model=ExportDetail)
async def get_export(
    cluster: str, namespace: str, name: str, response: Response, registry: Reg, _: Reader
) -> dict[str, Any]:
    """One cluster's export of a service, with that cluster's endpoints (static or agent's)."""
    state = await registry.get_export(
        existing_name("clusters", cluster),
        existing_name("exports", namespace),
        existing_name("exports", name),
    )
    response.headers["ETag"] = etag(state.export.revision)
    return export_out(state)


@router.put(
    PATH,
    response_model=ExportDetail,
    responses={201: {"model": ExportDetail, "description": "created"}, **HELD},
)
async def put_export(
    cluster: str,
    namespace: str,
    name: str,
    body: ExportIn,
    request: Request,
    response: Response,
    registry: Reg,
    who: Writer,
    if_match_: Annotated[str | None, Header(alias="If-Match")] = None,
) -> Any:
    """Create or replace a static export: ports, scope and the complete endpoint set
    (endpoints not listed are removed). 201 when created, 200 when replaced."""
    revision = if_match(if_match_, body.revision)
    spec = body.model_dump(exclude={"revision"})
    try:
        state, created = await registry.put_export(
            existing_name("clusters", cluster),
            namespace,
            name,
            spec,
            revision,
            who.name,
            now(request),
        )
    except HeldByAgent as exc:
        return held(exc, request)
    response.headers["ETag"] = etag(state.export.revision)
    if created:
        response.status_code = 201
        response.headers["Location"] = f"{router.prefix}/{cluster}/exports/{namespace}/{name}"
    return export_out(state)


@router.delete(PATH, status_code=204, responses=HELD)
async def delete_export(
    cluster: str,
    namespace: str,
    name: str,
    request: Request,
    registry: Reg,
    who: Writer,
    if_match_: Annotated[str | None, Header(alias="If-Match")] = None,
) -> Response:
    """Delete a static export with its endpoints."""
    revision = if_match(if_match_, None)
    try:
        await registry.delete_export(
            existing_name("clusters", cluster),
            existing_name("exports", namespace),
            existing_name("exports", name),
            revision,
            who.name,
            now(request),
        )
    except HeldByAgent as exc:
        return held(exc, request)
    return Response(status_code=204)
