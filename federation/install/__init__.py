"""`meshfed install`: Kubernetes manifests for the registry, the agent and the gateway.

Pure renderers (plain dicts; no Kubernetes client, no I/O besides reading the
packaged CRDs): `render(Options, tls)` returns the objects in the order `kubectl apply`
needs them (Namespace, CRDs, identities and RBAC, Services, workloads, budgets,
autoscalers, NetworkPolicies). One module per component: `registry` (and `etcd`),
`agent`, `gateway`, `policies`; shared conventions in `common`. `trustdir` and
`admin_token` are the I/O shells: the trust directory whose root and etcd
certificates `tls` carries (`--store etcd`), and whose admin token the registry's
Secret `meshfed-admin-token` carries (every store).

`parse_registry`, `parse_store` and friends validate flag values and raise
`ValueError` naming the value, so the CLI can turn them into exit-2 usage errors.
"""

from __future__ import annotations

import ipaddress
import json
import re
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import yaml

from federation.errors import BadStoreURL
from federation.install import agent, gateway, policies, registry
from federation.install.common import GRPC_PORT, Obj, Options, namespace
from federation.store import url_scheme

if TYPE_CHECKING:
    from federation.install.trustdir import StoreTLS

__all__ = ["COMPONENTS", "Options", "parse_registry", "parse_store", "render", "to_json", "to_yaml"]

COMPONENTS = ("registry", "agent", "gateway")
STORES = ("etcd", "postgres")
SERVICE_TYPES = ("LoadBalancer", "NodePort", "ClusterIP")
_DNS_NAME = re.compile(
    r"^(?=.{1,253}$)[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*$"
)


def components(text: str) -> tuple[str, ...]:
    if text == "all":
        return COMPONENTS
    if text not in COMPONENTS:
        raise ValueError(f"{text!r} is not one of registry, agent, gateway, all")
    return (text,)


def parse_registry(text: str) -> str:
    """The control plane as HOST:PORT, from `HOST[:PORT]` or `scheme://HOST[:PORT]`."""
    raw = text if "://" in text else f"grpc://{text}"
    try:
        parts = urlsplit(raw)
        host, port = parts.hostname, parts.port
    except ValueError:
        raise ValueError(f"{text!r} is not HOST:PORT or a URL of the registry") from None
    if not host or parts.path not in ("", "/") or parts.query or parts.username:
        raise ValueError(f"{text!r} is not HOST:PORT or a URL of the registry")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        if not _DNS_NAME.match(host.lower()):
            raise ValueError(f"{text!r}: {host!r} is not a DNS name or an IP address") from None
        shown = host.lower()
    else:
        shown = f"[{ip}]" if ip.version == 6 else str(ip)
    if port == 0:
        raise ValueError(f"{text!r}: port 0 is not a port")
    return f"{shown}:{port or GRPC_PORT}"


def parse_store(text: str) -> str:
    """`etcd`, `postgres` or `external:URL` (a PostgreSQL or etcd URL)."""
    if text in STORES:
        return text
    if text.startswith("external:"):
        url = text.removeprefix("external:")
        try:
            scheme = url_scheme(url)
        except BadStoreURL as exc:
            raise ValueError(f"{text!r}: {exc}") from None
        if scheme == "sqlite":
            raise ValueError(
                f"{text!r}: an SQLite file cannot be shared by registry replicas; "
                "use PostgreSQL or etcd"
            )
        return text
    raise ValueError(f"{text!r} is not etcd, postgres or external:URL")


def replicas(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 100:
        raise ValueError(f"{text!r} is not a number of replicas (1-100)")
    return int(text)


def service_type(text: str) -> str:
    if text not in ("LoadBalancer", "NodePort"):
        raise ValueError(f"{text!r} is not LoadBalancer or NodePort")
    return text


def external_name(text: str) -> str:
    """A DNS name or IP address (normalized: lower case, canonical IP text) for the
    registry's certificate."""
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        pass
    else:
        if isinstance(ip, ipaddress.IPv6Address) and ip.scope_id:
            raise ValueError(f"{text!r}: a scoped IPv6 address cannot be in a certificate")
        return str(ip)
    name = text.lower()
    if not _DNS_NAME.match(name):
        raise ValueError(f"{text!r} is not a DNS name or an IP address")
    return name


def image(text: str) -> str:
    if not text or any(c.isspace() for c in text) or text.startswith(("-", ":", "@")):
        raise ValueError(f"{text!r} is not a container image reference")
    return text


def needs_trust(opts: Options) -> bool:
    """Whether `opts` renders etcd, whose certificates come from a trust directory."""
    return "registry" in opts.components and opts.store == "etcd"


def needs_admin_token(opts: Options) -> bool:
    """Whether `opts` renders the registry, whose admin token comes from a trust
    directory (`admin_token.ensure`), whatever the store."""
    return "registry" in opts.components


def render(opts: Options, tls: StoreTLS | None = None, admin: bytes | None = None) -> list[Obj]:
    """Every object for `opts.components`, in apply order. `tls`: the etcd certificates
    and the federation root (`trustdir.ensure`), rendered as Secrets with `--store etcd`.
    `admin`: the admin token (`admin_token.ensure`), rendered as the Secret
    `meshfed-admin-token` the registry stores at start."""
    out: list[Obj] = [namespace(opts)]
    if "registry" in opts.components:
        out += registry.render(opts, tls, admin)
    if "agent" in opts.components:
        out += agent.render(opts)
    if "gateway" in opts.components:
        out += gateway.render(opts)
    out += policies.render(opts)
    return _apply_order(out)


_ORDER = (
    "Namespace",
    "CustomResourceDefinition",
    "ServiceAccount",
    "Secret",
    "ClusterRole",
    "ClusterRoleBinding",
    "Role",
    "RoleBinding",
    "Service",
    "StatefulSet",
    "Deployment",
    "PodDisruptionBudget",
    "HorizontalPodAutoscaler",
    "NetworkPolicy",
)


def _apply_order(objs: list[Obj]) -> list[Obj]:
    return sorted(objs, key=lambda o: _ORDER.index(o["kind"]))  # stable within a kind


def to_yaml(objs: list[Obj]) -> str:
    docs = []
    for o in objs:
        text = yaml.safe_dump(o, sort_keys=False, default_flow_style=False)
        if o["kind"] == "CustomResourceDefinition":
            text = agent.license_header() + text  # the upstream files' notice, kept
        docs.append(text)
    return "---\n" + "---\n".join(docs)


def to_json(objs: list[Obj]) -> str:
    doc: dict[str, Any] = {"apiVersion": "v1", "kind": "List", "metadata": {}, "items": objs}
    return json.dumps(doc, indent=2)
