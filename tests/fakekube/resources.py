"""The resource types the fake API server serves: a registry of group/version/resource.

Built-in types (core/v1, discovery.k8s.io/v1, rbac.authorization.k8s.io/v1,
coordination.k8s.io/v1 Leases) are
declared here; CRDs are registered from their YAML (the MCS CRDs copied from
kubernetes-sigs/mcs-api into `crds/`), and their `openAPIV3Schema` validates every
write, as the API server does for custom resources.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

CRD_DIR = Path(__file__).resolve().parent / "crds"


@dataclass(frozen=True)
class ResourceType:
    group: str  # "" for core
    version: str
    plural: str
    kind: str
    namespaced: bool = True
    status_subresource: bool = False
    schema: dict[str, Any] | None = field(default=None, compare=False, repr=False)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.group, self.version, self.plural)


BUILTIN = (
    ResourceType("", "v1", "namespaces", "Namespace", namespaced=False, status_subresource=True),
    ResourceType("", "v1", "services", "Service", status_subresource=True),
    ResourceType("", "v1", "secrets", "Secret"),
    ResourceType("", "v1", "configmaps", "ConfigMap"),
    ResourceType("", "v1", "serviceaccounts", "ServiceAccount"),
    ResourceType("", "v1", "endpoints", "Endpoints"),
    ResourceType("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice"),
    ResourceType("rbac.authorization.k8s.io", "v1", "roles", "Role"),
    ResourceType("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding"),
    ResourceType(
        "rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", namespaced=False
    ),
    ResourceType(
        "rbac.authorization.k8s.io",
        "v1",
        "clusterrolebindings",
        "ClusterRoleBinding",
        namespaced=False,
    ),
    ResourceType("apps", "v1", "deployments", "Deployment", status_subresource=True),
    ResourceType("coordination.k8s.io", "v1", "leases", "Lease"),
)


def crd_types(crd: dict[str, Any]) -> list[ResourceType]:
    """Every served version of one CustomResourceDefinition."""
    spec = crd["spec"]
    out = []
    for version in spec["versions"]:
        if not version.get("served", True):
            continue
        out.append(
            ResourceType(
                spec["group"],
                version["name"],
                spec["names"]["plural"],
                spec["names"]["kind"],
                namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                status_subresource="status" in (version.get("subresources") or {}),
                schema=version["schema"]["openAPIV3Schema"],
            )
        )
    return out


@functools.cache
def mcs_types() -> tuple[ResourceType, ...]:
    out: list[ResourceType] = []
    for path in sorted(CRD_DIR.glob("*.yaml")):
        out += crd_types(yaml.safe_load(path.read_text()))
    return tuple(out)


def default_types() -> list[ResourceType]:
    return [*BUILTIN, *mcs_types()]
