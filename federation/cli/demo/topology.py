"""The demo federation's shape: three clusters on loopback, as data (pure).

Each "cluster" gets its own loopback address (127.0.N.1; Linux routes all of
127.0.0.0/8 to lo), so gateways, egress listeners, echo servers and DNS of
different clusters can use the same port numbers without colliding, as they
would on separate hosts.
"""

from __future__ import annotations

from dataclasses import dataclass

NAMESPACE, SERVICE = "demo", "echo"
SERVICE_PORT = 8080  # the echo service's port as clients see it (egress listener port)
ECHO_PORT = 9000  # the echo backend's target port
GATEWAY_PORT = 15443  # Istio's east-west port
ADMIN_PORT = 15021  # Istio's gateway status port
DNS_PORT = 5353  # unprivileged; a real cluster's CoreDNS forwards clusterset.local here
AGENT_ADMIN_PORT = 9474  # `meshfed agent --admin-address` default port (docs/discovery.md)


@dataclass(frozen=True, slots=True)
class DemoCluster:
    name: str
    region: str
    zone: str
    index: int  # 127.0.<index>.1
    exports_echo: bool

    @property
    def ip(self) -> str:
        return f"127.0.{self.index}.1"

    @property
    def trust_domain(self) -> str:
        return f"{self.name}.demo.meshfed"

    @property
    def gateway(self) -> str:
        return f"{self.ip}:{GATEWAY_PORT}"

    @property
    def admin(self) -> str:
        return f"{self.ip}:{ADMIN_PORT}"

    @property
    def agent_admin(self) -> str:
        """The agent's /healthz, /readyz, /metrics: each cluster on its own loopback
        address, so the three agents do not share the default 0.0.0.0:9474."""
        return f"{self.ip}:{AGENT_ADMIN_PORT}"

    @property
    def egress(self) -> tuple[str, int]:
        return self.ip, SERVICE_PORT

    def static_source(self) -> str:
        """The agent's static source file (discovery_sync.sources.static format)."""
        if not self.exports_echo:
            return "services: []\n"
        return (
            "services:\n"
            f"  - namespace: {NAMESPACE}\n"
            f"    name: {SERVICE}\n"
            f"    ports: [{{name: tcp-echo, port: {SERVICE_PORT}, protocol: TCP}}]\n"
            "    endpoints:\n"
            f"      - {{address: {self.ip}, port: {ECHO_PORT}, zone: {self.zone}, ready: true}}\n"
        )


# issue 7: east (us-east/zone-a), east2 (us-east/zone-b), west (eu-west/zone-a);
# echo exported from east2 and west, called from east.
CLUSTERS = (
    DemoCluster("east", "us-east", "zone-a", 1, exports_echo=False),
    DemoCluster("east2", "us-east", "zone-b", 2, exports_echo=True),
    DemoCluster("west", "eu-west", "zone-a", 3, exports_echo=True),
)
CLIENT, NEAR, FAR = CLUSTERS
