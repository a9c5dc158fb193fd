"""NetworkPolicies: each component may receive and send only what it needs.

Every policy selects one component's pods and lists both directions, so anything
not listed is dropped (with a CNI that enforces NetworkPolicy). DNS (53) is allowed
everywhere: clusters put their resolver in different places (kube-dns, NodeLocal
DNSCache on a link-local address).

- registry: in 9470 API, 9471 control plane, 9472 join, from anywhere (remote
  clusters' agents and gateways, the CLI, Terraform); out to its store (etcd pods
  2379, PostgreSQL 5432, or the external URL's ports).
- etcd: in 2379 from registry and etcd pods, 2380 from etcd pods, 2381 health and
  metrics; out 2380 to etcd pods.
- agent: in 5353 DNS (CoreDNS forwards clusterset.local) and 9474 admin (Prometheus,
  probes); out to the Kubernetes API (443, 6443) and the registry's control plane and
  join ports.
- gateway: in 15443 (peers) and 15021 admin (Prometheus, probes); out to local pods
  (any port: export backends), peer gateways on 15443, the registry's ports.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from federation.install import agent, etcd, gateway, registry
from federation.install.common import (
    ADMIN_PORT,
    AGENT_ADMIN_PORT,
    API_PORT,
    DNS_PORT,
    ETCD_CLIENT_PORT,
    ETCD_METRICS_PORT,
    ETCD_PEER_PORT,
    GATEWAY_PORT,
    GRPC_PORT,
    Obj,
    Options,
    meta,
    obj,
    selector,
)

ANYWHERE: list[Obj] = [{"ipBlock": {"cidr": "0.0.0.0/0"}}, {"ipBlock": {"cidr": "::/0"}}]
# Also pods of any namespace: whether an ipBlock matches pod IPs is up to the CNI.
EVERYWHERE: list[Obj] = [*ANYWHERE, {"namespaceSelector": {}}]
DNS_EGRESS: Obj = {
    "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
}
STORE_PORTS = {"postgresql": 5432, "postgres": 5432, "etcd": 2379}


def _tcp(*ports: int) -> list[Obj]:
    return [{"protocol": "TCP", "port": p} for p in ports]


def _policy(
    opts: Options, name: str, lbls: dict[str, str], ingress: list[Obj], egress: list[Obj]
) -> Obj:
    return obj(
        "networking.k8s.io/v1",
        "NetworkPolicy",
        meta(name, lbls, opts.namespace),
        spec={
            "podSelector": {"matchLabels": selector(lbls)},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": ingress,
            "egress": [DNS_EGRESS, *egress],
        },
    )


def external_store_ports(url: str) -> list[int]:
    parts = urlsplit(url)
    scheme = parts.scheme.split("+", 1)[0]
    ports = set()
    for host in parts.netloc.rpartition("@")[2].split(","):
        _, sep, port = host.rpartition(":")
        if sep and port.isdigit() and not host.endswith("]"):
            ports.add(int(port))
        else:
            ports.add(STORE_PORTS.get(scheme, 5432))
    return sorted(ports)


def _registry_egress(opts: Options) -> list[Obj]:
    return [{"to": EVERYWHERE, "ports": _tcp(opts.registry_port, opts.registry_port + 1)}]


def render(opts: Options) -> list[Obj]:
    out: list[Obj] = []
    if "registry" in opts.components:
        lbls = registry.registry_labels(opts)
        if opts.store == "etcd":
            etcd_pods = {"podSelector": {"matchLabels": selector(etcd.etcd_labels(opts))}}
            store_egress = [{"to": [etcd_pods], "ports": _tcp(ETCD_CLIENT_PORT)}]
        elif opts.store == "postgres":
            store_egress = [{"to": EVERYWHERE, "ports": _tcp(5432)}]
        else:
            ports = external_store_ports(opts.store.removeprefix("external:"))
            store_egress = [{"to": EVERYWHERE, "ports": _tcp(*ports)}]
        ingress = [{"ports": _tcp(API_PORT, GRPC_PORT, GRPC_PORT + 1)}]  # from anywhere
        out.append(_policy(opts, registry.NAME, lbls, ingress, store_egress))
        if opts.store == "etcd":
            elbls = etcd.etcd_labels(opts)
            members = {"podSelector": {"matchLabels": selector(elbls)}}
            clients = {"podSelector": {"matchLabels": selector(lbls)}}
            ingress = [
                {"from": [clients, members], "ports": _tcp(ETCD_CLIENT_PORT)},
                {"from": [members], "ports": _tcp(ETCD_PEER_PORT)},
                {"ports": _tcp(ETCD_METRICS_PORT)},
            ]
            egress = [{"to": [members], "ports": _tcp(ETCD_PEER_PORT)}]
            out.append(_policy(opts, etcd.NAME, elbls, ingress, egress))
    if "agent" in opts.components:
        lbls = agent.agent_labels(opts)
        ingress = [
            {
                "ports": [
                    {"protocol": "UDP", "port": DNS_PORT},
                    {"protocol": "TCP", "port": DNS_PORT},
                ]
            },
            {"ports": _tcp(AGENT_ADMIN_PORT)},  # Prometheus, kubelet probes
        ]
        kube_api = {"to": ANYWHERE, "ports": _tcp(443, 6443)}
        out.append(_policy(opts, agent.NAME, lbls, ingress, [kube_api, *_registry_egress(opts)]))
    if "gateway" in opts.components:
        lbls = gateway.gateway_labels(opts)
        ingress = [{"ports": _tcp(GATEWAY_PORT)}, {"ports": _tcp(ADMIN_PORT)}]
        egress = [
            {"to": [{"namespaceSelector": {}}]},  # export backends: local pods, any port
            {"to": ANYWHERE, "ports": _tcp(GATEWAY_PORT)},  # peer gateways
            *_registry_egress(opts),
        ]
        out.append(_policy(opts, gateway.NAME, lbls, ingress, egress))
    return out
