"""A 3-member etcd cluster for the registry (`--store etcd`): StatefulSet with TLS.

Members find each other through a headless Service (stable names
`meshfed-etcd-N.meshfed-etcd.NS.svc`); peers and clients are authenticated with
certificates from three kubernetes.io/tls Secrets, each with `tls.crt` (leaf and
the store CA), `tls.key` and `ca.crt` (the federation root):

- `meshfed-etcd-server-tls`: serving certificate for client connections;
- `meshfed-etcd-peer-tls`: peer certificate (same SANs, client and server auth);
- `meshfed-etcd-client-tls`: the registry's client certificate.

`meshfed install` issues them from the federation's trust (`trustdir.py`) and
renders them (`render(opts, tls)`); the server and peer Secrets also carry
`store-ca.crt`, the store CA, which is etcd's only trust anchor for client and peer
certificates (why: trustdir.py). Without `tls` the Secrets are not rendered and
etcd trusts their `ca.crt`: bring your own (e.g. cert-manager).

etcd runs with `--max-txn-ops=10000` (docs/store.md: one service's endpoints are
replaced in one transaction) and health on a plain-HTTP metrics port for probes.
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING

from federation.install.common import (
    ETCD_CLIENT_PORT,
    ETCD_METRICS_PORT,
    ETCD_PEER_PORT,
    Obj,
    Options,
    container_security,
    labels,
    meta,
    obj,
    pdb,
    pod_security,
    prometheus_annotations,
    resources,
    selector,
    spread,
)

if TYPE_CHECKING:
    from federation.install.trustdir import LeafFiles, StoreTLS

NAME = "meshfed-etcd"
MEMBERS = 3
IMAGE = "quay.io/coreos/etcd:v3.5.21"
SERVER_SECRET = "meshfed-etcd-server-tls"
PEER_SECRET = "meshfed-etcd-peer-tls"
CLIENT_SECRET = "meshfed-etcd-client-tls"
CLIENT_CERT_DIR = "/etc/meshfed/etcd-client"
STORAGE = "10Gi"
UID = 65532
# Secret volumes: readable by the pod's fsGroup, not by everyone (they hold keys).
SECRET_MODE = 0o440
STORE_CA_KEY = "store-ca.crt"


def etcd_labels(opts: Options) -> dict[str, str]:
    return labels(opts, NAME, "store", instance="meshfed")


def member_host(opts: Options, i: int) -> str:
    return f"{NAME}-{i}.{NAME}.{opts.namespace}.svc"


def store_url(opts: Options) -> str:
    """The registry's `--store` for this cluster (federation/store/etcd_url.py)."""
    hosts = ",".join(f"{member_host(opts, i)}:{ETCD_CLIENT_PORT}" for i in range(MEMBERS))
    d = CLIENT_CERT_DIR
    return f"etcd://{hosts}/meshfed?cacert={d}/ca.crt&cert={d}/tls.crt&key={d}/tls.key"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def tls_secret(opts: Options, name: str, leaf: LeafFiles, tls: StoreTLS, *, store_ca: bool) -> Obj:
    """A kubernetes.io/tls Secret; `data` (not stringData) so that what is applied is
    what the API server returns, and an unchanged trust directory changes nothing."""
    data = {"tls.crt": b64(leaf.chain), "tls.key": b64(leaf.key), "ca.crt": b64(tls.root)}
    if store_ca:
        data[STORE_CA_KEY] = b64(tls.store_ca)
    return obj(
        "v1",
        "Secret",
        meta(name, etcd_labels(opts), opts.namespace),
        type="kubernetes.io/tls",
        data=data,
    )


def secrets(opts: Options, tls: StoreTLS) -> list[Obj]:
    return [
        tls_secret(opts, SERVER_SECRET, tls.server, tls, store_ca=True),
        tls_secret(opts, PEER_SECRET, tls.peer, tls, store_ca=True),
        tls_secret(opts, CLIENT_SECRET, tls.client, tls, store_ca=False),
    ]


def render(opts: Options, tls: StoreTLS | None = None) -> list[Obj]:
    """The etcd cluster; with `tls` also its three Secrets (else they are yours)."""
    trusted = STORE_CA_KEY if tls is not None else "ca.crt"
    lbls = etcd_labels(opts)
    sel = selector(lbls)
    ns = opts.namespace
    initial = ",".join(
        f"{NAME}-{i}=https://{member_host(opts, i)}:{ETCD_PEER_PORT}" for i in range(MEMBERS)
    )
    me = f"$(POD_NAME).{NAME}.{ns}.svc"
    command = [
        "etcd",
        "--name=$(POD_NAME)",
        "--data-dir=/var/lib/etcd/data",
        f"--listen-client-urls=https://0.0.0.0:{ETCD_CLIENT_PORT}",
        f"--advertise-client-urls=https://{me}:{ETCD_CLIENT_PORT}",
        f"--listen-peer-urls=https://0.0.0.0:{ETCD_PEER_PORT}",
        f"--initial-advertise-peer-urls=https://{me}:{ETCD_PEER_PORT}",
        f"--listen-metrics-urls=http://0.0.0.0:{ETCD_METRICS_PORT}",
        f"--initial-cluster={initial}",
        "--initial-cluster-state=new",
        f"--initial-cluster-token={NAME}-{ns}",
        "--client-cert-auth=true",
        f"--trusted-ca-file=/etc/etcd/tls/server/{trusted}",
        "--cert-file=/etc/etcd/tls/server/tls.crt",
        "--key-file=/etc/etcd/tls/server/tls.key",
        "--peer-client-cert-auth=true",
        f"--peer-trusted-ca-file=/etc/etcd/tls/peer/{trusted}",
        "--peer-cert-file=/etc/etcd/tls/peer/tls.crt",
        "--peer-key-file=/etc/etcd/tls/peer/tls.key",
        "--max-txn-ops=10000",
        "--max-request-bytes=8388608",
        "--auto-compaction-mode=periodic",
        "--auto-compaction-retention=1h",
        "--quota-backend-bytes=4294967296",
    ]
    container: Obj = {
        "name": "etcd",
        "image": IMAGE,
        "imagePullPolicy": "IfNotPresent",
        "command": command,
        "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
        "ports": [
            {"name": "client", "containerPort": ETCD_CLIENT_PORT, "protocol": "TCP"},
            {"name": "peer", "containerPort": ETCD_PEER_PORT, "protocol": "TCP"},
            {"name": "metrics", "containerPort": ETCD_METRICS_PORT, "protocol": "TCP"},
        ],
        "resources": resources("250m", "512Mi", "2", "2Gi"),
        # kubeadm's etcd probes: serializable health for liveness, quorum for readiness.
        "startupProbe": {
            "httpGet": {
                "path": "/health?serializable=false",
                "port": "metrics",
                "scheme": "HTTP",
            },
            "periodSeconds": 5,
            "timeoutSeconds": 5,
            "failureThreshold": 60,
        },
        "livenessProbe": {
            "httpGet": {
                "path": "/health?exclude=NOSPACE&serializable=true",
                "port": "metrics",
                "scheme": "HTTP",
            },
            "periodSeconds": 10,
            "timeoutSeconds": 5,
            "failureThreshold": 8,
        },
        "readinessProbe": {
            "httpGet": {"path": "/health?serializable=false", "port": "metrics", "scheme": "HTTP"},
            "periodSeconds": 5,
            "timeoutSeconds": 5,
            "failureThreshold": 3,
        },
        "securityContext": container_security(),
        "volumeMounts": [
            {"name": "data", "mountPath": "/var/lib/etcd"},
            {"name": "server-tls", "mountPath": "/etc/etcd/tls/server", "readOnly": True},
            {"name": "peer-tls", "mountPath": "/etc/etcd/tls/peer", "readOnly": True},
        ],
    }
    headless = obj(
        "v1",
        "Service",
        meta(NAME, lbls, ns),
        spec={
            "clusterIP": "None",
            # Members must resolve each other before they are ready (bootstrap).
            "publishNotReadyAddresses": True,
            "selector": sel,
            "ports": [
                {"name": "client", "port": ETCD_CLIENT_PORT, "targetPort": "client"},
                {"name": "peer", "port": ETCD_PEER_PORT, "targetPort": "peer"},
            ],
        },
    )
    statefulset = obj(
        "apps/v1",
        "StatefulSet",
        meta(NAME, lbls, ns),
        spec={
            "serviceName": NAME,
            "replicas": MEMBERS,
            # All members must start together to form the initial cluster.
            "podManagementPolicy": "Parallel",
            "updateStrategy": {"type": "RollingUpdate"},
            "selector": {"matchLabels": sel},
            "template": {
                "metadata": {
                    "labels": lbls,
                    "annotations": prometheus_annotations(ETCD_METRICS_PORT),
                },
                "spec": {
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "securityContext": pod_security(UID),
                    "terminationGracePeriodSeconds": 30,
                    "topologySpreadConstraints": spread(sel, "ScheduleAnyway"),
                    "containers": [container],
                    "volumes": [
                        secret_volume("server-tls", SERVER_SECRET),
                        secret_volume("peer-tls", PEER_SECRET),
                    ],
                },
            },
            "volumeClaimTemplates": [
                {
                    "metadata": {"name": "data", "labels": lbls},
                    "spec": {
                        "accessModes": ["ReadWriteOnce"],
                        "resources": {"requests": {"storage": STORAGE}},
                    },
                }
            ],
        },
    )
    return [
        *(secrets(opts, tls) if tls is not None else []),
        headless,
        statefulset,
        pdb(opts, NAME, lbls),
    ]


def secret_volume(name: str, secret: str) -> Obj:
    return {"name": name, "secret": {"secretName": secret, "defaultMode": SECRET_MODE}}
