"""The agent's RBAC is exactly what its code calls.

The agent's real Kubernetes source and sink (`discovery_sync.kube`) run against the
fake API server through every path that talks to Kubernetes (list and watch, export
status with a 409 retry, import create / status / replace / delete, EndpointSlice
create / replace / delete, the ConfigMap `meshfed-registry-ca` read / create / update
by `discovery_sync.kube.registry_ca`); every request the fake served is turned into the
(apiGroup, resource, verb) it needs, and that set must equal the rules `meshfed
install` renders — no missing permission, no extra one. The test's own setup writes
go straight to the fake's store, so only the agent's requests are recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cryptography.hazmat.primitives import serialization
from kubernetes import client

from discovery_sync.kube import conditions
from discovery_sync.kube.lease import LeaderElector, LeaseClient, lease_name
from discovery_sync.kube.registry_ca import RegistryCaWriter
from discovery_sync.leader import Timing
from federation.install import Options, agent, render
from federation.install.common import REGISTRY_CA_CONFIGMAP
from federation.model import TrustDomain
from tests.discovery.kube_pipeline import Pipeline, eventually, kube_api
from tests.fakekube import FakeKube
from tests.fakekube.server import _parse_path
from trust_bundle import create_root_ca

Perm = tuple[str, str, str]  # (apiGroup, resource[/subresource], verb)
MCS = ("multicluster.x-k8s.io", "v1alpha1")


def permission(method: str, target: str) -> tuple[Perm, str]:
    """(the permission a request needs, its namespace or "" if cluster-wide)."""
    url = urlsplit(target)
    group, _version, ns, plural, name, sub = _parse_path(url.path)
    watch = parse_qs(url.query).get("watch", [""])[-1] in ("true", "1")
    verb = {
        "GET": ("get" if name else "watch" if watch else "list"),
        "POST": "create",
        "PUT": "update",
        "PATCH": "patch",
        "DELETE": "delete",
    }[method]
    return (group, f"{plural}/{sub}" if sub else plural, verb), ns


def named_requests(requests: list[tuple[str, str]], resource: str) -> dict[str, set[str]]:
    """verb -> the object names its requests on `resource` carried in the path ("" for
    a create: the name is in the body, which RBAC's resourceNames cannot see)."""
    out: dict[str, set[str]] = {}
    for method, target in requests:
        (_, res, verb), _ = permission(method, target)
        if res == resource:
            out.setdefault(verb, set()).add(_parse_path(urlsplit(target).path)[4])
    return out


def rendered_rules(opts: Options) -> dict[str, set[Perm]]:
    out: dict[str, set[Perm]] = {}
    for o in render(opts):
        if o["kind"] in ("ClusterRole", "Role"):
            perms = out.setdefault(o["metadata"]["name"], set())
            for rule in o["rules"]:
                for g in rule["apiGroups"]:
                    for r in rule["resources"]:
                        perms.update((g, r, v) for v in rule["verbs"])
    return out


def store_write(kube: FakeKube, op: str, group: str, version: str, plural: str, *a: Any) -> Any:
    rt = kube.store.type(group, version, plural)
    return getattr(kube.store, op)(rt, *a)


def seed(kube: FakeKube, addresses: list[str], port_name: str = "http") -> None:
    store_write(kube, "create", "", "v1", "namespaces", "", {"metadata": {"name": "shop"}})
    service = {
        "metadata": {"name": "cart"},
        "spec": {"ports": [{"name": port_name, "port": 80, "protocol": "TCP"}]},
    }
    store_write(kube, "create", "", "v1", "services", "shop", service)
    store_write(
        kube, "create", "discovery.k8s.io", "v1", "endpointslices", "shop", slice_(addresses)
    )
    store_write(kube, "create", *MCS, "serviceexports", "shop", {"metadata": {"name": "cart"}})


def slice_(addresses: list[str]) -> dict[str, Any]:
    return {
        "metadata": {"name": "cart-abcde", "labels": {"kubernetes.io/service-name": "cart"}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": [{"addresses": [a], "conditions": {"ready": True}} for a in addresses],
    }


def objects(kube: FakeKube, group: str, plural: str) -> dict[tuple[str, str], Any]:
    return dict(kube.store.objects.get((group, plural), {}))


async def exercise_the_agent(kube: FakeKube) -> None:
    """Cluster B exports shop/cart and, as cluster A, imports it back: one API server."""
    pipeline = Pipeline(kube, kube, watch_timeout=5).start()
    try:
        seed(kube, ["10.1.0.1"])
        imports = lambda: objects(kube, MCS[0], "serviceimports")  # noqa: E731
        slices = lambda: [  # noqa: E731
            o
            for o in objects(kube, "discovery.k8s.io", "endpointslices").values()
            if (o["metadata"].get("labels") or {}).get("app.kubernetes.io/managed-by") == "meshfed"
        ]
        await eventually(
            lambda: imports() and slices() and imports()[("shop", "cart")].get("status")
        )
        # endpoints change: the imported slice is replaced
        store_write(
            kube,
            "update",
            "discovery.k8s.io",
            "v1",
            "endpointslices",
            "shop",
            "cart-abcde",
            slice_(["10.1.0.2"]),
        )
        await eventually(lambda: "10.1.0.2" in str(slices()))
        # ports change: the ServiceImport is replaced
        svc = kube.store.get(kube.store.type("", "v1", "services"), "shop", "cart")
        svc["spec"]["ports"][0]["name"] = "web"
        store_write(kube, "update", "", "v1", "services", "shop", "cart", svc)
        await eventually(lambda: "web" in str(imports().get(("shop", "cart"), {}).get("spec")))
        # a status write that races (409): the agent reads the export and writes again
        kube.fail_next("update", "serviceexports", 409, "Conflict")
        now = datetime.now(UTC)
        await pipeline.source.set_conditions({("shop", "cart"): [conditions.ready(True, now)]})
        # unexport: slices and the import are deleted
        store_write(kube, "delete", *MCS, "serviceexports", "shop", "cart")
        await eventually(lambda: not imports() and not slices())
    finally:
        await pipeline.stop()


async def exercise_the_election(kube: FakeKube, namespace: str) -> None:
    """Acquire, renew and release the agent's Lease (discovery_sync.kube.lease)."""
    store_write(kube, "create", "", "v1", "namespaces", "", {"metadata": {"name": namespace}})
    with client.ApiClient(kube.kube_config()) as api_client:
        leases = LeaseClient(api_client, namespace, lease_name("east"), timeout=2.0)
        elector = LeaderElector(leases, "agent-0", Timing(3, 1.0, 0.1))
        task = asyncio.create_task(elector.run())
        try:
            await eventually(lambda: elector.is_leader and elector.stats.writes >= 2)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        assert elector.stats.released == 1


async def exercise_the_registry_ca(kube: FakeKube, namespace: str) -> None:
    """Create, update (after a 409: read again), resync of the registry's roots."""

    def bundle(*n: int) -> dict[str, TrustDomain]:
        return {"east.test": TrustDomain("east.test", tuple(roots[i] for i in n))}

    now = datetime.now(UTC)
    roots = [
        create_root_ca(now).certificate.public_bytes(serialization.Encoding.PEM).decode()
        for _ in range(2)
    ]
    writer = RegistryCaWriter(kube_api(kube), namespace, "east.test")
    await writer.apply(bundle(0))
    kube.fail_next("update", "configmaps", 409, "Conflict")
    await writer.apply(bundle(0, 1))
    await writer.resync()
    assert (writer.stats.creates, writer.stats.updates, writer.stats.failures) == (1, 1, 0)


async def test_rbac_equals_what_the_agent_calls() -> None:
    with FakeKube(bookmark_interval=0.2) as kube:
        await exercise_the_agent(kube)
        await exercise_the_election(kube, "meshfed-system")
        await exercise_the_registry_ca(kube, "meshfed-system")
        requests = list(kube.requests)
    used: set[Perm] = set()
    cluster_wide: set[Perm] = set()
    namespaces: dict[Perm, set[str]] = {}
    for method, target in requests:
        perm, ns = permission(method, target)
        used.add(perm)
        if not ns:
            cluster_wide.add(perm)
        else:
            namespaces.setdefault(perm, set()).add(ns)
    # every path above was taken
    assert (MCS[0], "serviceexports", "get") in used  # the 409 retry
    assert (MCS[0], "serviceimports", "update") in used
    assert ("discovery.k8s.io", "endpointslices", "delete") in used
    assert ("coordination.k8s.io", "leases", "update") in used  # renew and release
    assert ("", "configmaps", "create") in used and ("", "configmaps", "update") in used

    opts = Options(("agent",), cluster="east", registry="r.example.com:9471")
    rules = rendered_rules(opts)
    granted = set().union(*rules.values())
    assert granted == used, f"missing: {used - granted}, extra: {granted - used}"
    # writes are namespaced, so RoleBindings (--agent-namespace) can scope them
    read = rules["meshfed-agent-read-meshfed-system"]
    write = rules["meshfed-agent-write-meshfed-system"]
    assert cluster_wide <= read
    assert {p[2] for p in read} <= {"get", "list", "watch"}
    assert {p[2] for p in write} <= {"create", "update", "delete"}
    lease = rules["meshfed-agent-leader-election"]  # a Role in the install namespace
    assert {p for p in used if p[1] == "leases"} == lease
    assert all(namespaces[p] == {"meshfed-system"} for p in lease)
    ca = rules["meshfed-agent-registry-ca"]  # a Role in the install namespace too
    assert {p for p in used if p[1] == "configmaps"} == ca
    assert all(namespaces[p] == {"meshfed-system"} for p in ca)
    # resourceNames: get and update name the one ConfigMap; create cannot be named
    ca_role = next(o for o in render(opts) if o["metadata"]["name"] == "meshfed-agent-registry-ca")
    assert ca_role["kind"] == "Role"
    by_verb: dict[str, set[str]] = {}
    for rule in ca_role["rules"]:
        for verb in rule["verbs"]:
            by_verb.setdefault(verb, set()).update(rule.get("resourceNames") or [""])
    assert named_requests(requests, "configmaps") == by_verb
    assert by_verb == {
        "get": {REGISTRY_CA_CONFIGMAP},
        "update": {REGISTRY_CA_CONFIGMAP},
        "create": {""},
    }
    # the renderer's tables are the source of the rules
    assert read == {(g, r, v) for g, r, vs in agent.READ_RULES for v in vs}
    assert write == {(g, r, v) for g, r, vs in agent.WRITE_RULES for v in vs}
    assert ca == {(g, r, v) for g, r, vs, _ in agent.REGISTRY_CA_RULES for v in vs}


def test_agent_namespaces_scope_the_writes_with_rolebindings() -> None:
    opts = Options(("agent",), cluster="east", registry="r:9471", watch_namespaces=("shop", "pay"))
    objs = render(opts)
    bindings = [o for o in objs if o["kind"] in ("RoleBinding", "ClusterRoleBinding")]
    kinds = {(o["kind"], o["metadata"].get("namespace"), o["roleRef"]["name"]) for o in bindings}
    assert kinds == {
        ("ClusterRoleBinding", None, "meshfed-agent-read-meshfed-system"),
        ("RoleBinding", "shop", "meshfed-agent-write-meshfed-system"),
        ("RoleBinding", "pay", "meshfed-agent-write-meshfed-system"),
        ("RoleBinding", "meshfed-system", "meshfed-agent-leader-election"),
        ("RoleBinding", "meshfed-system", "meshfed-agent-registry-ca"),
    }
    args = next(o for o in objs if o["kind"] == "Deployment")["spec"]["template"]["spec"][
        "containers"
    ][0]["args"]
    assert "--namespace=shop" in args and "--namespace=pay" in args
    # the Lease is in the install namespace, wherever that is
    lease_role = next(o for o in objs if o["kind"] == "Role")
    assert lease_role["metadata"]["namespace"] == "meshfed-system"
    assert "--lease-namespace=meshfed-system" not in args  # the agent's default
    moved = render(Options(("agent",), cluster="east", registry="r:9471", namespace="mesh"))
    assert next(o for o in moved if o["kind"] == "Role")["metadata"]["namespace"] == "mesh"
    moved_args = next(o for o in moved if o["kind"] == "Deployment")["spec"]["template"]["spec"][
        "containers"
    ][0]["args"]
    assert "--lease-namespace=mesh" in moved_args
