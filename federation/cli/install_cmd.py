"""`meshfed install`: print (or apply) the Kubernetes manifests of meshfed.

    meshfed install --component registry|agent|gateway|all [--cluster NAME]
        [--registry-url URL] [--store etcd|postgres|external:URL] [--replicas N]
        [--gateway-service LoadBalancer|NodePort] [--namespace meshfed-system]
        [--image IMAGE] [--trust-dir DIR] [--registry-external-name NAME ...]
        [-o yaml|json] [--apply --context C [--kubeconfig F]]

With the registry, the trust directory `--trust-dir` (default ./meshfed-trust) keeps
what install generates and reuses it on every run: the registry's admin token
(federation/install/admin_token.py; the Secret `meshfed-admin-token`), and on
`--store etcd` (the default) the federation root and etcd's peer and client
certificates (federation/install/trustdir.py), rendered as Secrets; a line per
change goes to stderr, never a token or key material.

Prints the manifests for `kubectl apply -f -`; writes nothing to any cluster unless
`--apply` is given, which creates or replaces each object through the Kubernetes
client (`discovery_sync.kube.apply`; idempotent: unchanged objects are not
written). Bad values exit 2 naming the value. docs/kubernetes.md has the walk-through.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from federation import install
from federation.cli import args as types
from federation.install import admin_token, trustdir
from federation.install.common import DEFAULT_IMAGE, Options


def _type(check: Callable[[str], Any], name: str) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            return check(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parse.__name__ = name  # argparse names the type in "invalid <name> value"
    return parse


def register(sub: Any) -> None:
    p = sub.add_parser(
        "install",
        help="print the Kubernetes manifests of the registry, agent and gateway",
        description="Print Kubernetes manifests for `kubectl apply -f -` "
        "(or apply them with --apply --context C).",
    )
    p.add_argument(
        "--component",
        required=True,
        type=_type(install.components, "component"),
        metavar="registry|agent|gateway|all",
    )
    p.add_argument("--cluster", type=types.cluster_name, help="the cluster (agent, gateway)")
    p.add_argument(
        "--registry-url",
        type=_type(install.parse_registry, "registry URL"),
        metavar="URL",
        help="the registry's control plane, HOST[:PORT] or a URL (default port 9471; "
        "default with --component all: the registry Service of this install)",
    )
    p.add_argument(
        "--store",
        type=_type(install.parse_store, "store"),
        default="etcd",
        metavar="etcd|postgres|external:URL",
        help="the registry's store (default etcd: a 3-member StatefulSet)",
    )
    p.add_argument(
        "--replicas",
        type=_type(install.replicas, "replicas"),
        default=2,
        metavar="N",
        help="registry replicas and the gateway's minimum (default 2)",
    )
    p.add_argument(
        "--gateway-service",
        type=_type(install.service_type, "service type"),
        default="LoadBalancer",
        metavar="LoadBalancer|NodePort",
    )
    p.add_argument(
        "--registry-service",
        type=_type(install.service_type, "service type"),
        default="LoadBalancer",
        metavar="LoadBalancer|NodePort",
        help="how agents and gateways of other clusters reach the registry",
    )
    p.add_argument("--namespace", type=types.namespace_name, default="meshfed-system")
    p.add_argument(
        "--image", type=_type(install.image, "image"), default=DEFAULT_IMAGE, metavar="IMAGE"
    )
    p.add_argument(
        "--trust-domain",
        type=types.trust_domain,
        help="the cluster's trust domain (default CLUSTER.local, as `meshfed cluster add`)",
    )
    p.add_argument("--region", type=types.label_value, help="the cluster's region")
    p.add_argument("--zone", type=types.label_value, help="the cluster's zone")
    p.add_argument(
        "--agent-namespace",
        action="append",
        type=types.namespace_name,
        default=[],
        metavar="NS",
        help="the agent exports from and writes imports into these namespaces only "
        "(repeatable; default every namespace)",
    )
    p.add_argument(
        "--no-crds", action="store_true", help="leave out the MCS CRDs (already installed)"
    )
    p.add_argument(
        "--trust-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="with the registry: where its admin token and, with --store etcd, the "
        "federation root and etcd's certificates are made and kept "
        f"(default ./{trustdir.DEFAULT_DIR}; keep it: re-runs reuse it)",
    )
    p.add_argument(
        "--registry-external-name",
        action="append",
        type=_type(install.external_name, "DNS name or IP"),
        default=[],
        metavar="NAME",
        help="a DNS name or IP of the registry's load balancer that agents and gateways "
        "of other clusters dial: put in the control plane's certificate (repeatable)",
    )
    p.add_argument("-o", "--output", choices=("yaml", "json"), default="yaml")
    p.add_argument("--apply", action="store_true", help="apply through the Kubernetes client")
    p.add_argument(
        "--context",
        dest="kube_context",
        type=types.context_name,
        metavar="C",
        help="kubeconfig context to apply to (with --apply)",
    )
    p.add_argument("--kubeconfig", metavar="F", help="kubeconfig file (default ~/.kube/config)")
    p.set_defaults(handler=_install, install_parser=p)


def options(ns: argparse.Namespace, p: argparse.ArgumentParser) -> Options:
    comps: tuple[str, ...] = ns.component
    needs_cluster = [c for c in comps if c in ("agent", "gateway")]
    if needs_cluster and ns.cluster is None:
        p.error(f"--cluster: required with --component {needs_cluster[0]}")
    if needs_cluster and ns.registry_url is None and "registry" not in comps:
        p.error(
            f"--registry-url: required with --component {needs_cluster[0]} "
            "(the registry's control plane, e.g. registry.example.com:9471)"
        )
    if "gateway" in comps and ns.replicas < 2:
        p.error(f"--replicas: {ns.replicas} is too few for the gateway (at least 2, across zones)")
    if (ns.region is None) != (ns.zone is None):
        p.error("--region and --zone: give both or neither")
    if ns.kube_context is not None and not ns.apply:
        p.error("--context: only with --apply (without it nothing is applied)")
    if ns.kubeconfig is not None and not ns.apply:
        p.error("--kubeconfig: only with --apply")
    if ns.apply and ns.kube_context is None:
        p.error("--apply: needs --context C (the kubeconfig context to apply to)")
    if ns.trust_dir is not None and "registry" not in comps:
        p.error(
            "--trust-dir: only with --component registry or all (it holds the registry's "
            "admin token and, with --store etcd, the federation root and etcd's certificates)"
        )
    if ns.registry_external_name and "registry" not in comps:
        p.error("--registry-external-name: only with --component registry or all")
    return Options(
        components=comps,
        namespace=ns.namespace,
        cluster=ns.cluster,
        registry=ns.registry_url,
        store=ns.store,
        replicas=ns.replicas,
        gateway_service=ns.gateway_service,
        registry_service=ns.registry_service,
        image=ns.image,
        trust_domain=ns.trust_domain,
        region=ns.region,
        zone=ns.zone,
        watch_namespaces=tuple(dict.fromkeys(ns.agent_namespace)),
        crds=not ns.no_crds,
        registry_names=tuple(dict.fromkeys(ns.registry_external_name)),
    )


def _install(ns: argparse.Namespace) -> int:
    opts = options(ns, ns.install_parser)
    tls, admin = None, None
    directory = ns.trust_dir or trustdir.DEFAULT_DIR
    try:
        if install.needs_admin_token(opts):
            admin = admin_token.ensure(directory, _note)
        if install.needs_trust(opts):
            tls = trustdir.ensure(directory, opts.namespace, datetime.now(UTC), _note)
    except trustdir.TrustDirError as exc:
        ns.install_parser.error(f"--trust-dir: {exc}")
    objs = install.render(opts, tls, admin)
    if not ns.apply:
        text = install.to_json(objs) if ns.output == "json" else install.to_yaml(objs)
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        return 0
    from discovery_sync.errors import DiscoveryError  # the Kubernetes client: only now
    from discovery_sync.kube.apply import apply_manifests

    try:
        results = apply_manifests(objs, ns.kubeconfig, ns.kube_context)
    except DiscoveryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for result in results:
        print(result.line())
    return 0 if all(r.ok for r in results) else 1


def _note(line: str) -> None:
    print(f"meshfed install: {line}", file=sys.stderr)
