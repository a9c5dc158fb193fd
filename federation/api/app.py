"""The FastAPI application factory: `create_app(registry) -> FastAPI`.

Why this module exists: `meshfed serve` and the tests build the same app from a
`Registry`; the clock and the metrics registry are parameters so tests can pin
time and several apps can share one process.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from federation.api import errors
from federation.api.metrics import ApiMetrics, MetricsMiddleware
from federation.api.routes_admin import router as admin_router
from federation.api.routes_clusters import router as clusters_router
from federation.api.routes_exports import router as exports_router
from federation.api.routes_health import router as health_router
from federation.api.routes_links import router as links_router
from federation.api.routes_services import router as services_router
from federation.api.routes_trust import router as trust_router
from federation.registry.service import Registry

DESCRIPTION = """\
The meshfed federation dashboard API. Authenticate with `Authorization: Bearer <token>`
(roles: viewer reads, editor also writes, admin also manages tokens and exports CAs).
Errors are `application/problem+json` with a `reason`; lists page with `limit` and
`continue`. Trust bundles are public.
"""


def _utcnow() -> datetime:
    return datetime.now(UTC)


def create_app(
    registry: Registry,
    *,
    clock: Callable[[], datetime] = _utcnow,
    metrics_registry: CollectorRegistry | None = None,
) -> FastAPI:
    app = FastAPI(
        title="meshfed registry",
        version="1",
        description=DESCRIPTION,
        openapi_url="/openapi.json",
    )
    app.state.registry = registry
    app.state.clock = clock
    app.state.metrics = ApiMetrics(metrics_registry or CollectorRegistry())
    errors.install(app)
    for router in (
        clusters_router,
        exports_router,
        links_router,
        services_router,
        admin_router,
        trust_router,
        health_router,
    ):
        app.include_router(router)
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    return app
