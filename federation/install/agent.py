"""The sync agent of one cluster (`meshfed agent --in-cluster`).

ServiceAccount, least-privilege RBAC, the MCS CRDs, a one-replica Deployment and
the `meshfed-dns` Service CoreDNS forwards `clusterset.local` to. The pod's admin
port (`admin`, 9474) serves the probes (/healthz, /readyz) and Prometheus (/metrics).

RBAC is exactly what `discovery_sync/kube` calls (tests/install checks it against the
requests the agent's source and sink make to the fake API server):

- reads, cluster-wide (the informers list and watch every namespace unless one is
  selected; the sink lists its managed objects across namespaces): `READ_RULES`;
- writes (ServiceImports, EndpointSlices, ServiceExport and ServiceImport status):
  `WRITE_RULES`, cluster-wide, or with `--agent-namespace` only in those namespaces
  (RoleBindings to the ClusterRole).

- leader election: the Lease `meshfed-agent-<cluster>` in the install namespace
  (`LEASE_RULES`, a Role there: get, create, update; `discovery_sync/kube/lease.py`).

- the registry's roots: the leader keeps the ConfigMap `meshfed-registry-ca` in the
  install namespace current through a root rotation (`discovery_sync/kube/registry_ca.py`):
  `REGISTRY_CA_RULES`, a Role there. get and update are limited to that one name
  (`resourceNames`); create cannot be (Kubernetes RBAC: the name of an object being
  created is not known when the request is authorized), so it is a rule of its own,
  the one the RBAC docs suggest, bounded by the Role to the install namespace. The
  installer does not render the ConfigMap instead (an empty one would replace the
  roots the operator put there at every `kubectl apply`, and a pod mounting it could
  not verify the registry): the operator creates it before install, and the agent
  only creates it again if someone deleted it.

Only the Lease holder writes, so two replicas (a warm standby that takes over
within the Lease duration) and a rolling update (a new pod next to the old ones)
are safe; both replicas join with the cluster's reusable join token.
"""

from __future__ import annotations

from importlib import resources as importlib_resources
from typing import Any, Final

import yaml

from federation.install.common import (
    AGENT_ADMIN_PORT,
    DNS_PORT,
    REGISTRY_CA_CONFIGMAP,
    REGISTRY_CA_DIR,
    Obj,
    Options,
    container_security,
    http_probe,
    join_token_env,
    labels,
    meta,
    obj,
    pod_security,
    prometheus_annotations,
    registry_ca_volume,
    resources,
    selector,
    service_account,
    tmp_volume,
)

# A leader and a warm standby (client-go leader election's usual HA shape).
AGENT_REPLICAS: Final = 2
NAME = "meshfed-agent"
DNS_SERVICE = "meshfed-dns"
MCS = "multicluster.x-k8s.io"
RBAC = "rbac.authorization.k8s.io"

Rule = tuple[str, str, tuple[str, ...]]  # (apiGroup, resource, verbs)

READ_RULES: tuple[Rule, ...] = (
    ("", "services", ("list", "watch")),
    ("discovery.k8s.io", "endpointslices", ("list", "watch")),
    (MCS, "serviceexports", ("get", "list", "watch")),
    (MCS, "serviceimports", ("list",)),
)
LEASE_RULES: tuple[Rule, ...] = (("coordination.k8s.io", "leases", ("create", "get", "update")),)
# (apiGroup, resource, verbs, resourceNames): () = any name (create cannot be restricted)
NamedRule = tuple[str, str, tuple[str, ...], tuple[str, ...]]
REGISTRY_CA_RULES: tuple[NamedRule, ...] = (
    ("", "configmaps", ("get", "update"), (REGISTRY_CA_CONFIGMAP,)),
    ("", "configmaps", ("create",), ()),
)
DEFAULT_LEASE_NAMESPACE = "meshfed-system"  # the agent's --lease-namespace default
WRITE_RULES: tuple[Rule, ...] = (
    ("discovery.k8s.io", "endpointslices", ("create", "delete", "update")),
    (MCS, "serviceexports/status", ("update",)),
    (MCS, "serviceimports", ("create", "delete", "update")),
    (MCS, "serviceimports/status", ("update",)),
)


def agent_labels(opts: Options) -> dict[str, str]:
    return labels(opts, NAME, "agent")


def crds() -> list[Obj]:
    """The MCS CRDs (kubernetes-sigs/mcs-api, Apache-2.0), as shipped in `crds/`."""
    folder = importlib_resources.files("federation.install").joinpath("crds")
    out: list[Obj] = []
    for name in ("serviceexports", "serviceimports"):
        text = folder.joinpath(f"{MCS}_{name}.yaml").read_text(encoding="utf-8")
        loaded: Any = yaml.safe_load(text)
        out.append(loaded)
    return out


def license_header() -> str:
    """The CRD files' leading comment (their copyright and Apache-2.0 notice)."""
    folder = importlib_resources.files("federation.install").joinpath("crds")
    text = folder.joinpath(f"{MCS}_serviceexports.yaml").read_text(encoding="utf-8")
    lines = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        lines.append(line)
    return "\n".join(lines) + "\n"


def _rules(rules: tuple[Rule, ...]) -> list[Obj]:
    return [
        {"apiGroups": [group], "resources": [resource], "verbs": list(verbs)}
        for group, resource, verbs in rules
    ]


def _named_rules(rules: tuple[NamedRule, ...]) -> list[Obj]:
    out: list[Obj] = []
    for group, resource, verbs, names in rules:
        rule: Obj = {"apiGroups": [group], "resources": [resource], "verbs": list(verbs)}
        if names:
            rule["resourceNames"] = list(names)
        out.append(rule)
    return out


def rbac(opts: Options) -> list[Obj]:
    lbls = agent_labels(opts)
    subject = [{"kind": "ServiceAccount", "name": NAME, "namespace": opts.namespace}]
    # ClusterRoles are cluster-wide: name them per namespace so two installs coexist.
    read, write = f"{NAME}-read-{opts.namespace}", f"{NAME}-write-{opts.namespace}"
    out = [
        obj(f"{RBAC}/v1", "ClusterRole", meta(read, lbls), rules=_rules(READ_RULES)),
        obj(f"{RBAC}/v1", "ClusterRole", meta(write, lbls), rules=_rules(WRITE_RULES)),
        obj(
            f"{RBAC}/v1",
            "ClusterRoleBinding",
            meta(read, lbls),
            roleRef={"apiGroup": RBAC, "kind": "ClusterRole", "name": read},
            subjects=subject,
        ),
    ]
    if not opts.watch_namespaces:
        out.append(
            obj(
                f"{RBAC}/v1",
                "ClusterRoleBinding",
                meta(write, lbls),
                roleRef={"apiGroup": RBAC, "kind": "ClusterRole", "name": write},
                subjects=subject,
            )
        )
    lease = f"{NAME}-leader-election"
    out += [
        obj(f"{RBAC}/v1", "Role", meta(lease, lbls, opts.namespace), rules=_rules(LEASE_RULES)),
        obj(
            f"{RBAC}/v1",
            "RoleBinding",
            meta(lease, lbls, opts.namespace),
            roleRef={"apiGroup": RBAC, "kind": "Role", "name": lease},
            subjects=subject,
        ),
    ]
    ca = f"{NAME}-registry-ca"
    out += [
        obj(
            f"{RBAC}/v1",
            "Role",
            meta(ca, lbls, opts.namespace),
            rules=_named_rules(REGISTRY_CA_RULES),
        ),
        obj(
            f"{RBAC}/v1",
            "RoleBinding",
            meta(ca, lbls, opts.namespace),
            roleRef={"apiGroup": RBAC, "kind": "Role", "name": ca},
            subjects=subject,
        ),
    ]
    for ns in opts.watch_namespaces:
        out.append(
            obj(
                f"{RBAC}/v1",
                "RoleBinding",
                meta(write, lbls, ns),
                roleRef={"apiGroup": RBAC, "kind": "ClusterRole", "name": write},
                subjects=subject,
            )
        )
    return out


def render(opts: Options) -> list[Obj]:
    assert opts.cluster is not None
    lbls = agent_labels(opts)
    sel = selector(lbls)
    ns = opts.namespace
    args = [
        "agent",
        f"--cluster={opts.cluster}",
        f"--registry={opts.registry_address}",
        f"--trust-domain={opts.cluster_trust_domain}",
        f"--registry-ca={REGISTRY_CA_DIR}/roots.pem",
        "--in-cluster",
        f"--dns=0.0.0.0:{DNS_PORT}",
        f"--admin-address=0.0.0.0:{AGENT_ADMIN_PORT}",
    ]
    if opts.namespace != DEFAULT_LEASE_NAMESPACE:  # leader election is on by default
        args.append(f"--lease-namespace={opts.namespace}")
    if opts.region and opts.zone:
        args += [f"--region={opts.region}", f"--zone={opts.zone}"]
    args += [f"--namespace={n}" for n in opts.watch_namespaces]
    tmp, tmp_mount = tmp_volume()
    ca, ca_mount = registry_ca_volume()
    container: Obj = {
        "name": "agent",
        "image": opts.image,
        "imagePullPolicy": "IfNotPresent",
        "args": args,
        "env": [join_token_env("agent")],
        "ports": [
            {"name": "dns-udp", "containerPort": DNS_PORT, "protocol": "UDP"},
            {"name": "dns-tcp", "containerPort": DNS_PORT, "protocol": "TCP"},
            {"name": "admin", "containerPort": AGENT_ADMIN_PORT, "protocol": "TCP"},
        ],
        "resources": resources("100m", "128Mi", "1", "512Mi"),
        # /healthz: the agent's loops run; /readyz: joined and initial list done
        # (not leadership: a standby serves DNS too; discovery_sync/admin.py).
        "livenessProbe": http_probe("/healthz", "admin", period=10, failures=3),
        "readinessProbe": http_probe("/readyz", "admin", period=5, failures=2),
        "securityContext": container_security(),
        "volumeMounts": [tmp_mount, ca_mount],
    }
    deployment = obj(
        "apps/v1",
        "Deployment",
        meta(NAME, lbls, ns),
        spec={
            "replicas": AGENT_REPLICAS,
            "revisionHistoryLimit": 5,
            # The new pod starts next to the old one; the Lease keeps one writer.
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
            },
            "selector": {"matchLabels": sel},
            "template": {
                "metadata": {
                    "labels": lbls,
                    "annotations": prometheus_annotations(AGENT_ADMIN_PORT),
                },
                "spec": {
                    "serviceAccountName": NAME,
                    "automountServiceAccountToken": True,
                    "enableServiceLinks": False,
                    "securityContext": pod_security(),
                    "terminationGracePeriodSeconds": 30,
                    "containers": [container],
                    "volumes": [tmp, ca],
                },
            },
        },
    )
    dns = obj(
        "v1",
        "Service",
        meta(DNS_SERVICE, lbls, ns),
        spec={
            "type": "ClusterIP",
            "selector": sel,
            "ports": [
                {"name": "dns-udp", "port": DNS_PORT, "targetPort": "dns-udp", "protocol": "UDP"},
                {"name": "dns-tcp", "port": DNS_PORT, "targetPort": "dns-tcp", "protocol": "TCP"},
            ],
        },
    )
    return [
        *(crds() if opts.crds else []),
        service_account(opts, NAME, lbls, automount=True),
        *rbac(opts),
        dns,
        deployment,
    ]
