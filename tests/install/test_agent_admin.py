"""The agent's manifests use its admin endpoint: HTTP probes, the `admin` port,
Prometheus annotations, and a NetworkPolicy that lets the probes and scrapes in.
(Schema validation for several Kubernetes versions: test_manifests.py's matrix.)"""

from __future__ import annotations

from typing import Any

import pytest

from discovery_sync.main import parser
from federation.install import Options, render
from federation.install.common import AGENT_ADMIN_PORT, DNS_PORT
from tests.install.conftest import MATRIX

Obj = dict[str, Any]
SOURCE = ["--registry-ca=ca.pem", "--in-cluster"]
AGENT_OPTS = [(i, o) for i, o in MATRIX if "agent" in o.components]


def agent_deployment(objs: list[Obj]) -> Obj:
    return next(
        o for o in objs if o["kind"] == "Deployment" and o["metadata"]["name"] == "meshfed-agent"
    )


def test_the_admin_port_is_the_agents_default() -> None:
    assert AGENT_ADMIN_PORT == 9474
    args = parser().parse_args(["--cluster=e", "--registry=r:1", "--trust-domain=t", *SOURCE])
    assert args.admin_address == ("0.0.0.0", AGENT_ADMIN_PORT)


@pytest.mark.parametrize("opts", [o for _, o in AGENT_OPTS], ids=[i for i, _ in AGENT_OPTS])
def test_agent_probes_port_scraping_and_policy(opts: Options) -> None:
    objs = render(opts)
    tpl = agent_deployment(objs)["spec"]["template"]
    c = tpl["spec"]["containers"][0]
    ports = {p["name"]: p for p in c["ports"]}
    assert ports["admin"] == {"name": "admin", "containerPort": 9474, "protocol": "TCP"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "admin", "scheme": "HTTP"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "admin", "scheme": "HTTP"}
    assert "tcpSocket" not in c["livenessProbe"] and "tcpSocket" not in c["readinessProbe"]
    assert tpl["metadata"]["annotations"] == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": "9474",
        "prometheus.io/path": "/metrics",
    }
    # the container's command line parses, and serves admin on the port the probes use
    args = parser().parse_args([*c["args"][1:], "--join-token=t"])
    assert args.admin_address == ("0.0.0.0", ports["admin"]["containerPort"])
    assert args.dns == ("0.0.0.0", DNS_PORT)
    # the admin port stays out of the DNS Service (probes and scrapes go to the pod)
    dns = next(o for o in objs if o["kind"] == "Service" and o["metadata"]["name"] == "meshfed-dns")
    assert {p["name"] for p in dns["spec"]["ports"]} == {"dns-udp", "dns-tcp"}
    policy = next(
        o for o in objs if o["kind"] == "NetworkPolicy" and o["metadata"]["name"] == "meshfed-agent"
    )
    allowed = {
        (p["protocol"], p["port"]) for rule in policy["spec"]["ingress"] for p in rule["ports"]
    }
    assert allowed == {("UDP", DNS_PORT), ("TCP", DNS_PORT), ("TCP", AGENT_ADMIN_PORT)}
    admin_rule = next(
        r for r in policy["spec"]["ingress"] if r["ports"] == [{"protocol": "TCP", "port": 9474}]
    )
    assert "from" not in admin_rule  # kubelet and Prometheus come from anywhere


def test_no_agent_probe_uses_a_named_port_the_container_lacks() -> None:
    for _, opts in AGENT_OPTS:
        c = agent_deployment(render(opts))["spec"]["template"]["spec"]["containers"][0]
        names = {p["name"] for p in c["ports"]}
        for probe in ("livenessProbe", "readinessProbe"):
            assert c[probe]["httpGet"]["port"] in names
