"""The registry (`meshfed serve`): a stateless Deployment over a shared store.

Deployment (N replicas spread across zones) + Service (REST API 9470, gRPC control
plane 9471, join 9472) + PodDisruptionBudget, and with `--store etcd` the etcd
cluster of `etcd.py`. Every replica shares one CA-key passphrase
(`MESHFED_KEY_PASSPHRASE` from the Secret `meshfed-registry`, key `key-passphrase`);
`--store postgres` reads the DSN from the Secret `meshfed-registry-store`, key `url`
(`MESHFED_STORE`), so no password is in the manifests.

With `--store etcd` and the trust material of `meshfed install` (`trustdir.py`),
the Secret `meshfed-root-ca` carries the federation root and its key (`root.pem`,
`root-key.pem`), mounted for `meshfed serve --root-ca`: the registry adopts that
root at first start instead of generating one (the root also signed etcd's
certificates).

With the admin token of `meshfed install` (`admin_token.py`, every store), the Secret
`meshfed-admin-token` (key `token`) is mounted for `meshfed serve --admin-token-file`:
every replica stores that token as an admin API token at start, so no replica's data
directory holds the one the operator needs. The pod template carries the token's
digest (`checksum/admin-token`), so a rotated token rolls the replicas.

`--registry-external-name` adds `--server-name` for the load balancer's names, which
remote agents and gateways dial and check against the control plane's certificate.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from federation.install import etcd
from federation.install.common import (
    API_PORT,
    DATA_DIR,
    GRPC_PORT,
    Obj,
    Options,
    container_security,
    http_probe,
    labels,
    meta,
    obj,
    pdb,
    pod_security,
    prometheus_annotations,
    resources,
    selector,
    service_account,
    spread,
    tmp_volume,
)

if TYPE_CHECKING:
    from federation.install.trustdir import StoreTLS

NAME = "meshfed-registry"
PASSPHRASE_SECRET = "meshfed-registry"  # key key-passphrase
STORE_SECRET = "meshfed-registry-store"  # key url (--store postgres)
JOIN_PORT = GRPC_PORT + 1
ROOT_CA_SECRET = "meshfed-root-ca"  # keys root.pem, root-key.pem (meshfed serve --root-ca)
ROOT_CA_DIR = "/etc/meshfed/root-ca"
ADMIN_TOKEN_SECRET = "meshfed-admin-token"  # key token (meshfed serve --admin-token-file)
ADMIN_TOKEN_KEY = "token"
ADMIN_TOKEN_DIR = "/etc/meshfed/admin-token"
ADMIN_TOKEN_CHECKSUM = "checksum/admin-token"


def registry_labels(opts: Options) -> dict[str, str]:
    return labels(opts, NAME, "registry", instance="meshfed")


def root_ca_secret(opts: Options, tls: StoreTLS) -> Obj:
    data = {"root.pem": etcd.b64(tls.root), "root-key.pem": etcd.b64(tls.root_key)}
    return obj(
        "v1",
        "Secret",
        meta(ROOT_CA_SECRET, registry_labels(opts), opts.namespace),
        type="Opaque",
        data=data,
    )


def admin_token_secret(opts: Options, token: bytes) -> Obj:
    return obj(
        "v1",
        "Secret",
        meta(ADMIN_TOKEN_SECRET, registry_labels(opts), opts.namespace),
        type="Opaque",
        data={ADMIN_TOKEN_KEY: etcd.b64(token)},
    )


def server_names(opts: Options) -> list[str]:
    """The names in the control plane's certificate besides localhost: the in-cluster
    Service names, then `--registry-external-name`s (each once)."""
    in_cluster = [f"{NAME}.{opts.namespace}.svc", f"{NAME}.{opts.namespace}.svc.cluster.local"]
    return list(dict.fromkeys([*in_cluster, *opts.registry_names]))


def render(opts: Options, tls: StoreTLS | None = None, admin: bytes | None = None) -> list[Obj]:
    """The registry; with `--store etcd` its etcd cluster, and with `tls` (the trust
    directory's material) the etcd Secrets and the root the registry adopts; with
    `admin` (the trust directory's admin token) its Secret, mounted for
    `--admin-token-file`."""
    lbls = registry_labels(opts)
    sel = selector(lbls)
    ns = opts.namespace
    args = [
        "serve",
        f"--api=0.0.0.0:{API_PORT}",
        f"--grpc=0.0.0.0:{GRPC_PORT}",
        f"--data-dir={DATA_DIR}",
        # the names agents and gateways dial must be in the control plane certificate
        *(f"--server-name={name}" for name in server_names(opts)),
    ]
    annotations = prometheus_annotations(API_PORT)
    env: list[Obj] = [
        {
            "name": "MESHFED_KEY_PASSPHRASE",
            "valueFrom": {"secretKeyRef": {"name": PASSPHRASE_SECRET, "key": "key-passphrase"}},
        },
    ]
    tmp, tmp_mount = tmp_volume()
    volumes: list[Obj] = [{"name": "data", "emptyDir": {}}, tmp]
    mounts: list[Obj] = [{"name": "data", "mountPath": DATA_DIR}, tmp_mount]
    out: list[Obj] = []
    if admin is not None:
        args.append(f"--admin-token-file={ADMIN_TOKEN_DIR}/{ADMIN_TOKEN_KEY}")
        volumes.append(etcd.secret_volume("admin-token", ADMIN_TOKEN_SECRET))
        mounts.append({"name": "admin-token", "mountPath": ADMIN_TOKEN_DIR, "readOnly": True})
        annotations[ADMIN_TOKEN_CHECKSUM] = hashlib.sha256(admin).hexdigest()
        out.append(admin_token_secret(opts, admin))
    if opts.store == "etcd":
        args.append(f"--store={etcd.store_url(opts)}")
        volumes.append(etcd.secret_volume("etcd-client", etcd.CLIENT_SECRET))
        mounts.append({"name": "etcd-client", "mountPath": etcd.CLIENT_CERT_DIR, "readOnly": True})
        out += etcd.render(opts, tls)
        if tls is not None:
            args.append(f"--root-ca={ROOT_CA_DIR}")
            volumes.append(etcd.secret_volume("root-ca", ROOT_CA_SECRET))
            mounts.append({"name": "root-ca", "mountPath": ROOT_CA_DIR, "readOnly": True})
            out.append(root_ca_secret(opts, tls))
    elif opts.store == "postgres":
        env.append(
            {
                "name": "MESHFED_STORE",
                "valueFrom": {"secretKeyRef": {"name": STORE_SECRET, "key": "url"}},
            }
        )
    else:
        args.append(f"--store={opts.store.removeprefix('external:')}")
    container: Obj = {
        "name": "registry",
        "image": opts.image,
        "imagePullPolicy": "IfNotPresent",
        "args": args,
        "env": env,
        "ports": [
            {"name": "http-api", "containerPort": API_PORT, "protocol": "TCP"},
            {"name": "grpc", "containerPort": GRPC_PORT, "protocol": "TCP"},
            {"name": "grpc-join", "containerPort": JOIN_PORT, "protocol": "TCP"},
        ],
        "resources": resources("100m", "256Mi", "1", "1Gi"),
        "startupProbe": http_probe("/healthz", "http-api", period=2, failures=60),
        "livenessProbe": http_probe("/healthz", "http-api"),
        "readinessProbe": http_probe("/readyz", "http-api", period=5),
        "securityContext": container_security(),
        "volumeMounts": mounts,
    }
    deployment = obj(
        "apps/v1",
        "Deployment",
        meta(NAME, lbls, ns),
        spec={
            "replicas": opts.replicas,
            "revisionHistoryLimit": 5,
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
            },
            "selector": {"matchLabels": sel},
            "template": {
                "metadata": {"labels": lbls, "annotations": annotations},
                "spec": {
                    "serviceAccountName": NAME,
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "securityContext": pod_security(),
                    # The REST API drains for up to 20 s on SIGTERM (docs/api.md).
                    "terminationGracePeriodSeconds": 30,
                    "topologySpreadConstraints": spread(sel, "ScheduleAnyway"),
                    "containers": [container],
                    "volumes": volumes,
                },
            },
        },
    )
    service_spec: Obj = {
        "type": opts.registry_service,
        "selector": sel,
        "ports": [
            {"name": "http-api", "port": API_PORT, "targetPort": "http-api", "protocol": "TCP"},
            {"name": "grpc", "port": GRPC_PORT, "targetPort": "grpc", "protocol": "TCP"},
            {"name": "grpc-join", "port": JOIN_PORT, "targetPort": "grpc-join", "protocol": "TCP"},
        ],
    }
    service = obj("v1", "Service", meta(NAME, lbls, ns), spec=service_spec)
    return [
        service_account(opts, NAME, lbls, automount=False),
        *out,
        service,
        deployment,
        pdb(opts, NAME, lbls),
    ]
