"""/healthz (the process runs), /readyz (the store answers) and /metrics (Prometheus)."""

from __future__ import annotations

import contextlib
from typing import Any

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from federation.api.auth import Reg
from federation.api.errors import problem
from federation.api.schemas import Status
from federation.errors import FederationError

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Status)
async def healthz() -> dict[str, Any]:
    return {"status": "ok"}


@router.get("/readyz", response_model=Status, responses={503: {"description": "store down"}})
async def readyz(request: Request, registry: Reg) -> Any:
    try:
        revision = await registry.ping()
    except FederationError as exc:
        return problem(503, "Not ready", f"store: {exc}", "StoreUnavailable", request)
    return {"status": "ready", "revision": revision}


@router.get("/metrics", response_class=Response)
async def metrics(request: Request, registry: Reg) -> Response:
    api_metrics = request.app.state.metrics
    # A store outage shows in readyz and the store histogram; keep scraping.
    with contextlib.suppress(FederationError):
        api_metrics.set_endpoints(await registry.endpoints_by_cluster())
    body = generate_latest(api_metrics.registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
