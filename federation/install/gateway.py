"""The east-west gateway of one cluster (`meshfed gateway --registry ...`).

Deployment (2+ replicas, spread across zones, then nodes) + Service exposing 15443
(LoadBalancer or NodePort, `externalTrafficPolicy: Local` so the gateway sees the
peer's address for its per-source limits) + PodDisruptionBudget +
HorizontalPodAutoscaler (autoscaling/v2, CPU). The admin port 15021 serves
`/metrics` (scraped via the `prometheus.io/*` pod annotations) and `/ready`
(readiness: 503 once a drain starts, so the pod leaves the Service first).
"""

from __future__ import annotations

from federation.install.common import (
    ADMIN_PORT,
    DATA_DIR,
    GATEWAY_PORT,
    REGISTRY_CA_DIR,
    Obj,
    Options,
    container_security,
    http_probe,
    join_token_env,
    labels,
    meta,
    obj,
    pdb,
    pod_security,
    prometheus_annotations,
    registry_ca_volume,
    resources,
    selector,
    service_account,
    spread,
    tcp_probe,
    tmp_volume,
)

NAME = "meshfed-gateway"
STATE_DIR = f"{DATA_DIR}/gateway"
DRAIN_SECONDS = 30  # GatewaySettings' drain deadline (docs/gateway.md)


def gateway_labels(opts: Options) -> dict[str, str]:
    return labels(opts, NAME, "gateway")


def max_replicas(replicas: int) -> int:
    return max(3 * replicas, 6)


def render(opts: Options) -> list[Obj]:
    assert opts.cluster is not None
    lbls = gateway_labels(opts)
    sel = selector(lbls)
    ns = opts.namespace
    args = [
        "gateway",
        f"--cluster={opts.cluster}",
        f"--registry={opts.registry_address}",
        f"--trust-domain={opts.cluster_trust_domain}",
        f"--registry-ca={REGISTRY_CA_DIR}/roots.pem",
        f"--state-dir={STATE_DIR}",
        f"--listen=0.0.0.0:{GATEWAY_PORT}",
        f"--admin=0.0.0.0:{ADMIN_PORT}",
    ]
    if opts.region and opts.zone:
        args += [f"--region={opts.region}", f"--zone={opts.zone}"]
    tmp, tmp_mount = tmp_volume()
    ca, ca_mount = registry_ca_volume()
    container: Obj = {
        "name": "gateway",
        "image": opts.image,
        "imagePullPolicy": "IfNotPresent",
        "args": args,
        # The join token only in the environment (a Secret reference), which the
        # gateway reads as the agent does: a `--join-token=$(VAR)` arg shows in `ps`.
        "env": [join_token_env("gateway")],
        "ports": [
            {"name": "tls", "containerPort": GATEWAY_PORT, "protocol": "TCP"},
            {"name": "http-admin", "containerPort": ADMIN_PORT, "protocol": "TCP"},
        ],
        "resources": resources("250m", "128Mi", "2", "512Mi"),
        "livenessProbe": tcp_probe("tls"),
        "readinessProbe": http_probe("/ready", "http-admin", period=5, failures=2),
        "securityContext": container_security(),
        "volumeMounts": [
            {"name": "state", "mountPath": STATE_DIR},
            tmp_mount,
            ca_mount,
        ],
    }
    deployment = obj(
        "apps/v1",
        "Deployment",
        meta(NAME, lbls, ns),
        spec={
            # No `replicas`: the HorizontalPodAutoscaler owns it (minReplicas is
            # --replicas), so re-applying the manifests never undoes a scale-up.
            "revisionHistoryLimit": 5,
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
            },
            "selector": {"matchLabels": sel},
            "template": {
                "metadata": {
                    "labels": lbls,
                    "annotations": prometheus_annotations(ADMIN_PORT),
                },
                "spec": {
                    "serviceAccountName": NAME,
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "securityContext": pod_security(),
                    "terminationGracePeriodSeconds": DRAIN_SECONDS + 15,
                    "topologySpreadConstraints": spread(sel, "DoNotSchedule"),
                    "containers": [container],
                    "volumes": [{"name": "state", "emptyDir": {}}, tmp, ca],
                },
            },
        },
    )
    service = obj(
        "v1",
        "Service",
        meta(NAME, lbls, ns),
        spec={
            "type": opts.gateway_service,
            "externalTrafficPolicy": "Local",
            "selector": sel,
            "ports": [
                {"name": "tls", "port": GATEWAY_PORT, "targetPort": "tls", "protocol": "TCP"},
            ],
        },
    )
    hpa = obj(
        "autoscaling/v2",
        "HorizontalPodAutoscaler",
        meta(NAME, lbls, ns),
        spec={
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": NAME},
            "minReplicas": opts.replicas,
            "maxReplicas": max_replicas(opts.replicas),
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": 70},
                    },
                }
            ],
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 300}},
        },
    )
    return [
        service_account(opts, NAME, lbls, automount=False),
        service,
        deployment,
        pdb(opts, NAME, lbls),
        hpa,
    ]
