"""A 3-member etcd cluster for the registry (`--store etcd`): StatefulSet with TLS.

Members find each other through a headless Service (stable names
`meshfed-etcd-N.meshfed-etcd.NS.svc`); peers and clients are authenticated with
certificates from three Secrets the operator creates (docs/kubernetes.md), each
with `tls.crt`, `tls.key` and `ca.crt` (the cert-manager / kubernetes.io/tls shape):

- `meshfed-etcd-server-tls`: serving certificate for client connections (SANs
  `*.meshfed-etcd.NS.svc`, `*.meshfed-etcd.NS.svc.cluster.local`);
- `meshfed-etcd-peer-tls`: peer certificate (same SANs, client and server auth);
- `meshfed-etcd-client-tls`: the registry's client certificate.

etcd runs with `--max-txn-ops=10000` (docs/store.md: one service's endpoints are
replaced in one transaction) and health on a plain-HTTP metrics port for probes.
"""

from __future__ import annotations

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

NAME = "meshfed-etcd"
MEMBERS = 3
IMAGE = "quay.io/coreos/etcd:v3.5.21"
SERVER_SECRET = "meshfed-etcd-server-tls"
PEER_SECRET = "meshfed-etcd-peer-tls"
CLIENT_SECRET = "meshfed-etcd-client-tls"
CLIENT_CERT_DIR = "/etc/meshfed/etcd-client"
STORAGE = "10Gi"
UID = 65532


def etcd_labels(opts: Options) -> dict[str, str]:
    return labels(opts, NAME, "store", instance="meshfed")


def member_host(opts: Options, i: int) -> str:
    return f"{NAME}-{i}.{NAME}.{opts.namespace}.svc"


def store_url(opts: Options) -> str:
    """The registry's `--store` for this cluster (federation/store/etcd_url.py)."""
    hosts = ",".join(f"{member_host(opts, i)}:{ETCD_CLIENT_PORT}" for i in range(MEMBERS))
    d = CLIENT_CERT_DIR
    return f"etcd://{hosts}/meshfed?cacert={d}/ca.crt&cert={d}/tls.crt&key={d}/tls.key"


def render(opts: Options) -> list[Obj]:
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
        "--trusted-ca-file=/etc/etcd/tls/server/ca.crt",
        "--cert-file=/etc/etcd/tls/server/tls.crt",
        "--key-file=/etc/etcd/tls/server/tls.key",
        "--peer-client-cert-auth=true",
        "--peer-trusted-ca-file=/etc/etcd/tls/peer/ca.crt",
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
                        {"name": "server-tls", "secret": {"secretName": SERVER_SECRET}},
                        {"name": "peer-tls", "secret": {"secretName": PEER_SECRET}},
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
    return [headless, statefulset, pdb(opts, NAME, lbls)]
