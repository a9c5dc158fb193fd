"""Prometheus metrics of the REST API: requests, latencies, endpoints by cluster.

Why this module exists: operators alert on the registry with the names every
HTTP service uses (`*_requests_total`, `*_request_duration_seconds`, see the
Prometheus naming guide). Labels use the route template (`/api/v1/clusters/{name}`),
never the raw path, so a scanner cannot explode the label cardinality.
Each app has its own `CollectorRegistry`, so several apps can live in one process.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

UNMATCHED = "<unmatched>"


class ApiMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.requests = Counter(
            "meshfed_api_requests",
            "REST API requests, by method, route template and status code.",
            ["method", "route", "code"],
            registry=registry,
        )
        self.duration = Histogram(
            "meshfed_api_request_duration_seconds",
            "REST API request latency, by method and route template.",
            ["method", "route"],
            registry=registry,
        )
        self.endpoints = Gauge(
            "meshfed_endpoints",
            "Endpoints in the registry, by cluster (refreshed on scrape).",
            ["cluster"],
            registry=registry,
        )

    def set_endpoints(self, counts: dict[str, int]) -> None:
        self.endpoints.clear()
        for cluster, count in counts.items():
            self.endpoints.labels(cluster).set(count)


class MetricsMiddleware:
    """Pure ASGI middleware (no body buffering) observing every HTTP request."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 500}

        async def observe(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, observe)
        finally:
            route: Any = scope.get("route")
            template = getattr(route, "path", None) or UNMATCHED
            method = scope.get("method", "")
            self.metrics.requests.labels(method, template, str(status["code"])).inc()
            self.metrics.duration.labels(method, template).observe(time.perf_counter() - started)
