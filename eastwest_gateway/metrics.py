"""Prometheus metrics of one gateway process.

Why it exists: every outcome the issue asks to observe (connections by direction,
peer, service and outcome; bytes; handshake failures by reason; connect latency;
ejections; probe state; reloads) is declared here, once, with Prometheus naming
conventions (``_total`` counters, ``_seconds`` histograms, base units). Each
gateway owns its own registry so several can live in one test process.

Label values are bounded: ``service`` is a configured route's service (unknown
SNIs are counted with ``service=""``, never with the attacker-chosen name) and
``reason`` comes from a fixed set in :mod:`eastwest_gateway.errors`.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

INGRESS = "ingress"
EGRESS = "egress"
# Connect latency buckets: loopback (~100 us) up to the 5 s connect timeout.
CONNECT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.connections = Counter(
            "meshfed_gateway_connections",
            "Connections handled, counted when they end, by outcome.",
            ["direction", "peer", "service", "outcome"],
            registry=r,
        )
        self.active = Gauge(
            "meshfed_gateway_connections_active",
            "Connections currently open.",
            ["direction"],
            registry=r,
        )
        self.bytes = Counter(
            "meshfed_gateway_bytes",
            "Bytes relayed; flow=rx is from the downstream client, tx is towards it.",
            ["direction", "service", "flow"],
            registry=r,
        )
        self.handshake_failures = Counter(
            "meshfed_gateway_handshake_failures",
            "ClientHello and TLS handshake failures by reason.",
            ["direction", "reason"],
            registry=r,
        )
        self.connect_latency = Histogram(
            "meshfed_gateway_upstream_connect_duration_seconds",
            "Time to establish the TCP connection to a backend or upstream gateway.",
            ["direction"],
            buckets=CONNECT_BUCKETS,
            registry=r,
        )
        self.connect_failures = Counter(
            "meshfed_gateway_upstream_connect_failures",
            "Failed connects to a backend or upstream gateway cluster.",
            ["direction", "cluster"],
            registry=r,
        )
        self.ejections = Counter(
            "meshfed_gateway_outlier_ejections",
            "Upstream clusters ejected after consecutive connect failures.",
            ["cluster"],
            registry=r,
        )
        self.peer_health = Gauge(
            "meshfed_gateway_peer_health",
            "1 for the current probe state of each peer gateway cluster.",
            ["cluster", "state"],
            registry=r,
        )
        self.reloads = Counter(
            "meshfed_gateway_config_reloads",
            "Route file reloads by outcome.",
            ["outcome"],
            registry=r,
        )
        self.routes = Gauge("meshfed_gateway_routes", "Ingress routes loaded.", registry=r)
        self.svid_info = Gauge(
            "meshfed_gateway_svid_info",
            "Registry mode: 1 for the root the gateway's SVID chains to (a root rotation "
            "moves it at activate).",
            ["root_sha256"],
            registry=r,
        )
        self.svid_renewals = Counter(
            "meshfed_gateway_svid_renewals",
            "Registry mode: SVID renewals by reason (half_lifetime, root_rotation).",
            ["reason"],
            registry=r,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
