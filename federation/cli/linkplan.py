"""Which Kubernetes objects `meshfed link A B` makes in each cluster (pure: manifests).

In each of the two clusters:

shared by every link of that cluster (the links using one are listed in its
`meshfed.io/links` annotation; `meshfed unlink` deletes it with the last of them):
  Namespace       meshfed-system
  ServiceAccount  meshfed-system/meshfed-agent
  Role, RoleBinding meshfed-system/meshfed-agent-leader-election   (leases; the
                  ConfigMap meshfed-registry-ca the leader keeps current)
  --mesh istio:   Namespace istio-system, Secret istio-system/cacerts
  --mesh linkerd: Namespace linkerd, Secret linkerd/linkerd-identity-issuer,
                  ConfigMap linkerd/linkerd-identity-trust-roots

this link's own (label `meshfed.io/link=<a>-<b>`; `meshfed unlink` selects by it):
  Role + RoleBinding `meshfed-agent-<a>-<b>` in each of --namespaces, or one
  ClusterRole + ClusterRoleBinding `meshfed-agent-<a>-<b>` for every namespace
  Secret meshfed-system/meshfed-agent-join-<peer>: a join token for the cluster's
  agent, its expiry in the annotation `meshfed.io/expires`

The agent's rules are the least it uses (discovery_sync.kube: source reads services,
endpointslices and serviceexports and writes serviceexports/status; sink writes
serviceimports (+status) and its own endpointslices) plus leases for leader
election in meshfed-system.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

Obj = dict[str, Any]

SYSTEM_NAMESPACE = "meshfed-system"
SERVICE_ACCOUNT = "meshfed-agent"
LEADER_ELECTION = "meshfed-agent-leader-election"
REGISTRY_CA_CONFIGMAP = "meshfed-registry-ca"  # discovery_sync.kube.registry_ca.CONFIGMAP
CREDENTIAL_PREFIX = "meshfed-agent-join-"

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "meshfed"
LINK_LABEL = "meshfed.io/link"
CLUSTER_LABEL = "meshfed.io/cluster"
EXPIRES = "meshfed.io/expires"
PREVIOUS_EXPIRES = "meshfed.io/previous-expires"
PEER = "meshfed.io/peer"

ISTIO_NAMESPACE = "istio-system"
ISTIO_SECRET = "cacerts"
ISTIO_FILES = ("ca-cert.pem", "ca-key.pem", "root-cert.pem", "cert-chain.pem")
LINKERD_NAMESPACE = "linkerd"
LINKERD_ISSUER = "linkerd-identity-issuer"
LINKERD_TRUST_ROOTS = "linkerd-identity-trust-roots"

_RBAC = "rbac.authorization.k8s.io"
_MCS = "multicluster.x-k8s.io"
READ = ["get", "list", "watch"]
WRITE = ["get", "list", "watch", "create", "update", "delete"]
AGENT_RULES: list[Obj] = [
    {"apiGroups": [""], "resources": ["services"], "verbs": READ},
    {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": WRITE},
    {"apiGroups": [_MCS], "resources": ["serviceexports"], "verbs": READ},
    {"apiGroups": [_MCS], "resources": ["serviceimports"], "verbs": WRITE},
    {
        "apiGroups": [_MCS],
        "resources": ["serviceexports/status", "serviceimports/status"],
        "verbs": ["update"],
    },
]
LEASE_RULES: list[Obj] = [
    {
        "apiGroups": ["coordination.k8s.io"],
        "resources": ["leases"],
        "verbs": ["get", "create", "update"],
    },
    # The leader keeps the ConfigMap agents and gateways verify the registry with
    # current through root rotations (discovery_sync.kube.registry_ca); create cannot
    # be limited by name in RBAC, so it has a rule of its own (in this namespace only).
    {
        "apiGroups": [""],
        "resources": ["configmaps"],
        "resourceNames": [REGISTRY_CA_CONFIGMAP],
        "verbs": ["get", "update"],
    },
    {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create"]},
]


def link_id(a: str, b: str) -> str:
    """The `meshfed.io/link` label value: `<a>-<b>`, hashed down to 63 characters."""
    text = f"{a}-{b}"
    if len(text) <= 63:
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()[:10]
    return f"{text[:52].rstrip('-')}-{digest}"


def link_ids(a: str, b: str) -> list[str]:
    """Both orders: `unlink B A` finds what `link A B` made."""
    return sorted({link_id(a, b), link_id(b, a)})


def selector(a: str, b: str) -> str:
    return f"{MANAGED_BY_LABEL}={MANAGED_BY},{LINK_LABEL} in ({','.join(link_ids(a, b))})"


@dataclass(frozen=True)
class Planned:
    manifest: Obj
    shared: bool  # several links may use it (ensure_shared / release)


def _meta(name: str, namespace: str | None, labels: Mapping[str, str] | None = None) -> Obj:
    meta: Obj = {"name": name, "labels": {MANAGED_BY_LABEL: MANAGED_BY, **(labels or {})}}
    if namespace:
        meta["namespace"] = namespace
    return meta


def _obj(kind: str, api_version: str, meta: Obj, **fields: Any) -> Obj:
    return {"apiVersion": api_version, "kind": kind, "metadata": meta, **fields}


def namespace(name: str) -> Obj:
    return _obj("Namespace", "v1", _meta(name, None))


def _b64(data: bytes | str) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.b64encode(raw).decode()


def shared_objects(mesh: str, mesh_files: Mapping[str, str] | None) -> list[Obj]:
    """The per-cluster objects, in creation order (namespaces first)."""
    subject = {"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": SYSTEM_NAMESPACE}
    out = [
        namespace(SYSTEM_NAMESPACE),
        _obj("ServiceAccount", "v1", _meta(SERVICE_ACCOUNT, SYSTEM_NAMESPACE)),
        _obj(
            "Role",
            f"{_RBAC}/v1",
            _meta(LEADER_ELECTION, SYSTEM_NAMESPACE),
            rules=LEASE_RULES,
        ),
        _obj(
            "RoleBinding",
            f"{_RBAC}/v1",
            _meta(LEADER_ELECTION, SYSTEM_NAMESPACE),
            roleRef={"apiGroup": _RBAC, "kind": "Role", "name": LEADER_ELECTION},
            subjects=[subject],
        ),
    ]
    files = dict(mesh_files or {})
    if mesh == "istio":
        out += [
            namespace(ISTIO_NAMESPACE),
            _obj(
                "Secret",
                "v1",
                _meta(ISTIO_SECRET, ISTIO_NAMESPACE),
                type="Opaque",
                data={f: _b64(files[f]) for f in ISTIO_FILES},
            ),
        ]
    elif mesh == "linkerd":
        # Linkerd's external-CA layout (identity.externalCA=true,
        # identity.issuer.scheme=kubernetes.io/tls): the issuer as a TLS Secret with
        # the trust anchors in ca.crt, and the anchors in the trust-roots ConfigMap.
        out += [
            namespace(LINKERD_NAMESPACE),
            _obj(
                "Secret",
                "v1",
                _meta(LINKERD_ISSUER, LINKERD_NAMESPACE),
                type="kubernetes.io/tls",
                data={
                    "ca.crt": _b64(files["ca.crt"]),
                    "tls.crt": _b64(files["issuer.crt"]),
                    "tls.key": _b64(files["issuer.key"]),
                },
            ),
            _obj(
                "ConfigMap",
                "v1",
                _meta(LINKERD_TRUST_ROOTS, LINKERD_NAMESPACE),
                data={"ca-bundle.crt": files["ca.crt"]},
            ),
        ]
    return out


def shared_candidates() -> list[tuple[str, str | None, str]]:
    """(kind, namespace, name) of every shared object link may have made, in deletion
    order (the namespaces last)."""
    return [
        ("Secret", ISTIO_NAMESPACE, ISTIO_SECRET),
        ("Secret", LINKERD_NAMESPACE, LINKERD_ISSUER),
        ("ConfigMap", LINKERD_NAMESPACE, LINKERD_TRUST_ROOTS),
        ("RoleBinding", SYSTEM_NAMESPACE, LEADER_ELECTION),
        ("Role", SYSTEM_NAMESPACE, LEADER_ELECTION),
        ("ServiceAccount", SYSTEM_NAMESPACE, SERVICE_ACCOUNT),
        ("Namespace", None, ISTIO_NAMESPACE),
        ("Namespace", None, LINKERD_NAMESPACE),
        ("Namespace", None, SYSTEM_NAMESPACE),
    ]


def link_rbac(cluster: str, lid: str, namespaces: list[str]) -> list[Obj]:
    """This link's RBAC for the agent: a Role per namespace, or a ClusterRole."""
    labels = {LINK_LABEL: lid, CLUSTER_LABEL: cluster}
    name = f"{SERVICE_ACCOUNT}-{lid}"
    subject = {"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": SYSTEM_NAMESPACE}
    if not namespaces:
        return [
            _obj("ClusterRole", f"{_RBAC}/v1", _meta(name, None, labels), rules=AGENT_RULES),
            _obj(
                "ClusterRoleBinding",
                f"{_RBAC}/v1",
                _meta(name, None, labels),
                roleRef={"apiGroup": _RBAC, "kind": "ClusterRole", "name": name},
                subjects=[subject],
            ),
        ]
    out: list[Obj] = []
    for ns in sorted(set(namespaces)):
        out += [
            _obj("Role", f"{_RBAC}/v1", _meta(name, ns, labels), rules=AGENT_RULES),
            _obj(
                "RoleBinding",
                f"{_RBAC}/v1",
                _meta(name, ns, labels),
                roleRef={"apiGroup": _RBAC, "kind": "Role", "name": name},
                subjects=[subject],
            ),
        ]
    return out


def credential_name(peer: str) -> str:
    return f"{CREDENTIAL_PREFIX}{peer}"


def timestamp(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def credential_secret(
    cluster: str,
    peer: str,
    lid: str,
    token: str,
    expires: datetime,
    previous: tuple[str, datetime] | None = None,
) -> Obj:
    """The join-token Secret of `cluster`'s agent for the link to `peer`.

    After a rotation it also holds the previous token (`previous-token`, expiry in
    `meshfed.io/previous-expires`) until that one expires, so an agent that read the
    old file can still join: there is no moment without a valid token.
    """
    meta = _meta(credential_name(peer), SYSTEM_NAMESPACE, {LINK_LABEL: lid, CLUSTER_LABEL: cluster})
    annotations = {EXPIRES: timestamp(expires), PEER: peer}
    data = {"cluster": _b64(cluster), "token": _b64(token)}
    if previous is not None:
        annotations[PREVIOUS_EXPIRES] = timestamp(previous[1])
        data["previous-token"] = _b64(previous[0])
    meta["annotations"] = annotations
    return _obj("Secret", "v1", meta, type="Opaque", data=data)


def tokens_of(secret: Obj) -> tuple[str, ...]:
    """Every join token a credential Secret holds (current and previous), decoded."""
    data = secret.get("data") or {}
    out = []
    for key in ("token", "previous-token"):
        try:
            token = base64.b64decode(data.get(key) or "").decode()
        except ValueError:
            continue
        if "." in token:
            out.append(token)
    return tuple(out)


def credential_of(secret: Obj) -> tuple[str, datetime] | None:
    """(token, expiry) held by a credential Secret, or None if it holds none."""
    token = (secret.get("data") or {}).get("token")
    expires = parse_time(((secret.get("metadata") or {}).get("annotations") or {}).get(EXPIRES))
    if not token or expires is None:
        return None
    try:
        return base64.b64decode(token).decode(), expires
    except ValueError:
        return None
