"""What every rendered object shares: options, labels, security context, probes.

Pure functions returning plain dicts (camelCase, as the API server takes them):
no Kubernetes client here (the import contract keeps it under discovery_sync).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

Obj = dict[str, Any]

PART_OF = "meshfed"
# Not "meshfed": the agent's sink owns the objects labelled managed-by=meshfed
# (ServiceImports, EndpointSlices) and sweeps the ones its view does not name.
MANAGED_BY = "meshfed-install"

API_PORT, GRPC_PORT = 9470, 9471  # `meshfed serve` (docs/api.md); join = gRPC + 1
GATEWAY_PORT, ADMIN_PORT = 15443, 15021  # docs/gateway.md
DNS_PORT = 5353  # the agent's clusterset.local DNS (docs/discovery.md)
AGENT_ADMIN_PORT = 9474  # the agent's /healthz, /readyz, /metrics (docs/discovery.md)
ETCD_CLIENT_PORT, ETCD_PEER_PORT, ETCD_METRICS_PORT = 2379, 2380, 2381

UID = 10001  # the Containerfile's `meshfed` user
DATA_DIR = "/var/lib/meshfed"
REGISTRY_CA_DIR = "/etc/meshfed/registry-ca"
REGISTRY_CA_CONFIGMAP = "meshfed-registry-ca"  # key roots.pem (meshfed trust export --format pem)
JOIN_TOKENS_SECRET = "meshfed-join-tokens"  # keys agent, gateway (single-use join tokens)


def version() -> str:
    try:
        return metadata.version("meshfed")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a bare tree
        return "0.0.0"


DEFAULT_IMAGE = f"ghcr.io/meshfed/meshfed:{version()}"


@dataclass(frozen=True)
class Options:
    """Everything `meshfed install` renders from, already validated."""

    components: tuple[str, ...]  # subset of ("registry", "agent", "gateway"), in that order
    namespace: str = "meshfed-system"
    cluster: str | None = None
    registry: str | None = None  # HOST:PORT of the control plane (agent, gateway)
    store: str = "etcd"  # "etcd", "postgres" or "external:URL"
    replicas: int = 2
    gateway_service: str = "LoadBalancer"
    registry_service: str = "LoadBalancer"
    image: str = DEFAULT_IMAGE
    trust_domain: str | None = None  # default: CLUSTER.local (as `meshfed cluster add`)
    region: str | None = None
    zone: str | None = None
    watch_namespaces: tuple[str, ...] = ()  # the agent's --namespace; () = every namespace
    crds: bool = True
    # `--registry-external-name`: load balancer names / IPs remote agents and gateways
    # dial, added to the control plane's certificate (`meshfed serve --server-name`)
    registry_names: tuple[str, ...] = ()
    extra_labels: dict[str, str] = field(default_factory=dict)

    @property
    def registry_address(self) -> str:
        return self.registry or f"meshfed-registry.{self.namespace}.svc:{GRPC_PORT}"

    @property
    def registry_port(self) -> int:
        return int(self.registry_address.rpartition(":")[2])

    @property
    def cluster_trust_domain(self) -> str:
        return self.trust_domain or f"{self.cluster}.local"


def labels(opts: Options, name: str, component: str, instance: str | None = None) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": name,
        "app.kubernetes.io/instance": instance or opts.cluster or "meshfed",
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": PART_OF,
        "app.kubernetes.io/managed-by": MANAGED_BY,
        "app.kubernetes.io/version": version(),
    }


def selector(all_labels: dict[str, str]) -> dict[str, str]:
    """The immutable part: name and instance (never the version)."""
    keep = ("app.kubernetes.io/name", "app.kubernetes.io/instance")
    return {k: all_labels[k] for k in keep}


def meta(
    name: str,
    lbls: dict[str, str],
    namespace: str | None = None,
    annotations: dict[str, str] | None = None,
) -> Obj:
    out: Obj = {"name": name}
    if namespace is not None:
        out["namespace"] = namespace
    out["labels"] = dict(lbls)
    if annotations:
        out["annotations"] = dict(annotations)
    return out


def obj(api_version: str, kind: str, metadata: Obj, **body: Any) -> Obj:
    return {"apiVersion": api_version, "kind": kind, "metadata": metadata, **body}


def namespace(opts: Options) -> Obj:
    lbls = {
        "app.kubernetes.io/part-of": PART_OF,
        "app.kubernetes.io/managed-by": MANAGED_BY,
        # Every pod meshfed renders passes the "restricted" Pod Security Standard.
        "pod-security.kubernetes.io/enforce": "restricted",
        "pod-security.kubernetes.io/enforce-version": "latest",
    }
    return obj("v1", "Namespace", {"name": opts.namespace, "labels": lbls})


def service_account(opts: Options, name: str, lbls: dict[str, str], automount: bool) -> Obj:
    return obj(
        "v1",
        "ServiceAccount",
        meta(name, lbls, opts.namespace),
        automountServiceAccountToken=automount,
    )


def pod_security(uid: int = UID) -> Obj:
    return {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": uid,
        "fsGroup": uid,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security() -> Obj:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def resources(cpu: str, memory: str, cpu_limit: str, memory_limit: str) -> Obj:
    return {
        "requests": {"cpu": cpu, "memory": memory},
        "limits": {"cpu": cpu_limit, "memory": memory_limit},
    }


def http_probe(path: str, port: str, *, period: int = 10, failures: int = 3, delay: int = 0) -> Obj:
    probe: Obj = {
        "httpGet": {"path": path, "port": port, "scheme": "HTTP"},
        "periodSeconds": period,
        "timeoutSeconds": 2,
        "failureThreshold": failures,
    }
    if delay:
        probe["initialDelaySeconds"] = delay
    return probe


def tcp_probe(port: str, *, period: int = 10, failures: int = 3) -> Obj:
    return {
        "tcpSocket": {"port": port},
        "periodSeconds": period,
        "timeoutSeconds": 2,
        "failureThreshold": failures,
    }


def tmp_volume() -> tuple[Obj, Obj]:
    """(volume, mount): a small writable /tmp under a read-only root filesystem."""
    return (
        {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
        {"name": "tmp", "mountPath": "/tmp"},
    )


def registry_ca_volume() -> tuple[Obj, Obj]:
    return (
        {"name": "registry-ca", "configMap": {"name": REGISTRY_CA_CONFIGMAP}},
        {"name": "registry-ca", "mountPath": REGISTRY_CA_DIR, "readOnly": True},
    )


def join_token_env(key: str) -> Obj:
    return {
        "name": "MESHFED_JOIN_TOKEN",
        "valueFrom": {"secretKeyRef": {"name": JOIN_TOKENS_SECRET, "key": key}},
    }


def spread(sel: dict[str, str], zone_policy: str) -> list[Obj]:
    """Spread replicas across zones (`zone_policy`), then across nodes (best effort)."""
    return [
        {
            "maxSkew": 1,
            "topologyKey": "topology.kubernetes.io/zone",
            "whenUnsatisfiable": zone_policy,
            "labelSelector": {"matchLabels": dict(sel)},
        },
        {
            "maxSkew": 1,
            "topologyKey": "kubernetes.io/hostname",
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": dict(sel)},
        },
    ]


def pdb(opts: Options, name: str, lbls: dict[str, str]) -> Obj:
    return obj(
        "policy/v1",
        "PodDisruptionBudget",
        meta(name, lbls, opts.namespace),
        spec={"maxUnavailable": 1, "selector": {"matchLabels": selector(lbls)}},
    )


def prometheus_annotations(port: int, path: str = "/metrics") -> dict[str, str]:
    return {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(port),
        "prometheus.io/path": path,
    }
