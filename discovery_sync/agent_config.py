"""The agent's configuration, and the helpers `meshfed agent` builds it with.

Why this module exists: `AgentConfig` is what the command line (discovery_sync.main)
hands the agent -- the cluster, the registry and how to join it, the source, the
sinks, locality, leader election -- and reading it should not mean reading the
agent's tasks. agent.py re-exports every name here, so `from discovery_sync.agent
import AgentConfig, read_ca` keeps working.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from discovery_sync.errors import SourceError
from discovery_sync.ipam import DEFAULT_CIDR
from discovery_sync.kube.lease import DEFAULT_NAMESPACE
from discovery_sync.leader import Timing
from discovery_sync.sources.kube import NamespaceFilter
from discovery_sync.types import Locality


@dataclass(frozen=True)
class AgentConfig:
    cluster: str
    registry: str  # host:port of the control plane (mTLS)
    join_token: str
    trust_domain: str
    registry_ca: bytes  # federation roots: verify the registry before the token is sent
    join_address: str = ""  # default: the control plane port + 1 (docs/controlplane.md)
    kubeconfig: str | None = None
    context: str | None = None
    in_cluster: bool = False
    static_file: str | None = None
    imports_file: str | None = None
    dns_listen: tuple[str, int] | None = None
    locality: Locality = field(default_factory=Locality)
    namespaces: NamespaceFilter = field(default_factory=NamespaceFilter)
    egress_addresses: tuple[str, ...] = ()
    clusterset_cidr: str = DEFAULT_CIDR
    kube_sink: bool = True
    leader_elect: bool = False  # only with Kubernetes (the Lease lives there)
    lease_namespace: str = DEFAULT_NAMESPACE
    identity: str = ""  # default: <hostname>_<pid>
    lease_timing: Timing = field(default_factory=Timing)
    # keep the ConfigMap meshfed-registry-ca in lease_namespace current (Kubernetes only)
    registry_ca_configmap: bool = True


def default_join_address(registry: str) -> str:
    host, _, port = registry.rpartition(":")
    return f"{host}:{int(port) + 1}"


def read_ca(path: str) -> bytes:
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise SourceError("--registry-ca", f"cannot read {path}: {err.strerror}") from err
    if b"-----BEGIN CERTIFICATE-----" not in data:
        raise SourceError("--registry-ca", f"{path} holds no PEM certificate")
    return data
