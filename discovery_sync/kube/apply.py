"""Create-or-replace a list of manifests (`meshfed install --apply`), idempotently.

Generic over kinds: each object goes to the API server's REST path for its
apiVersion and kind (`KINDS`), through the official client's plain REST call (the
plumbing of `objects.Objects`). For each object, in order:

- missing: created;
- present and already holding every field the manifest sets (a recursive subset:
  server defaults such as a Service's clusterIP or a container's
  terminationMessagePath do not count as differences): left alone, no write, so its
  resourceVersion does not move;
- otherwise replaced (PUT with the live resourceVersion, retried on a conflict),
  keeping what the server or others own: labels and annotations others added, a
  Service's allocated cluster IPs and node ports, and the replica count of a
  workload whose manifest leaves it to an autoscaler.

A CustomResourceDefinition that already exists is never replaced (someone may run
a newer MCS release): it is reported `unchanged` or `kept`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from discovery_sync.errors import KubeConflict, KubeError
from discovery_sync.kube.api import load_client
from discovery_sync.kube.objects import Kind, Objects

Obj = dict[str, Any]

_APPS, _RBAC = "apps", "rbac.authorization.k8s.io"
KINDS: dict[tuple[str, str], Kind] = {
    (k.api_version, k.kind): k
    for k in (
        Kind("Namespace", "namespaces", namespaced=False),
        Kind("ServiceAccount", "serviceaccounts"),
        Kind("Service", "services"),
        Kind("ConfigMap", "configmaps"),
        Kind("Secret", "secrets"),
        Kind("Deployment", "deployments", _APPS),
        Kind("StatefulSet", "statefulsets", _APPS),
        Kind("PodDisruptionBudget", "poddisruptionbudgets", "policy"),
        Kind("HorizontalPodAutoscaler", "horizontalpodautoscalers", "autoscaling", "v2"),
        Kind("NetworkPolicy", "networkpolicies", "networking.k8s.io"),
        Kind("Role", "roles", _RBAC),
        Kind("RoleBinding", "rolebindings", _RBAC),
        Kind("ClusterRole", "clusterroles", _RBAC, namespaced=False),
        Kind("ClusterRoleBinding", "clusterrolebindings", _RBAC, namespaced=False),
        Kind("Lease", "leases", "coordination.k8s.io"),
        Kind(
            "CustomResourceDefinition",
            "customresourcedefinitions",
            "apiextensions.k8s.io",
            namespaced=False,
        ),
    )
}


@dataclass(frozen=True)
class Result:
    kind: str
    namespace: str | None
    name: str
    action: str  # created, configured, unchanged, kept, failed
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.action != "failed"

    def line(self) -> str:
        """kubectl's style: `deployment.apps/meshfed-registry created`."""
        where = f" -n {self.namespace}" if self.namespace else ""
        text = f"{self.kind.lower()}/{self.name}{where} {self.action}"
        return f"{text}: {self.error}" if self.error else text


def kind_of(obj: Obj) -> Kind:
    try:
        return KINDS[(obj["apiVersion"], obj["kind"])]
    except KeyError:
        raise KubeError(f"cannot apply {obj.get('apiVersion')}/{obj.get('kind')} objects") from None


def contains(live: Any, want: Any) -> bool:
    """Does `live` hold everything `want` sets (dicts: a subset; lists: item by item)?"""
    if isinstance(want, dict):
        return isinstance(live, dict) and all(
            k in live and contains(live[k], v) for k, v in want.items()
        )
    if isinstance(want, list):
        return (
            isinstance(live, list)
            and len(live) == len(want)
            and all(contains(a, b) for a, b in zip(live, want, strict=True))
        )
    return bool(live == want)


def up_to_date(live: Obj, want: Obj) -> bool:
    have_meta, want_meta = live.get("metadata") or {}, want.get("metadata") or {}
    for part in ("labels", "annotations"):
        if not contains(have_meta.get(part) or {}, want_meta.get(part) or {}):
            return False
    return all(
        contains(live.get(k), v)
        for k, v in want.items()
        if k not in ("apiVersion", "kind", "metadata")
    )


def replacement(live: Obj, want: Obj) -> Obj:
    """The PUT body: `want`, plus what the server and others own on `live`."""
    out = {k: v for k, v in want.items()}
    meta = dict(want["metadata"])
    live_meta = live.get("metadata") or {}
    meta["resourceVersion"] = live_meta.get("resourceVersion")
    for part in ("labels", "annotations"):
        merged = {**(live_meta.get(part) or {}), **(want["metadata"].get(part) or {})}
        if merged:
            meta[part] = merged
    out["metadata"] = meta
    spec, live_spec = want.get("spec"), live.get("spec")
    if isinstance(spec, dict) and isinstance(live_spec, dict):
        spec = dict(spec)
        if want["kind"] == "Service":
            for field in ("clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"):
                if field not in spec and field in live_spec:
                    spec[field] = live_spec[field]
            if "healthCheckNodePort" in live_spec and spec.get("type") == "LoadBalancer":
                spec.setdefault("healthCheckNodePort", live_spec["healthCheckNodePort"])
            allocated = {p.get("name"): p.get("nodePort") for p in live_spec.get("ports") or []}
            ports = []
            for port in spec.get("ports") or []:
                node_port = allocated.get(port.get("name"))
                if "nodePort" not in port and node_port and spec.get("type") != "ClusterIP":
                    port = {**port, "nodePort": node_port}
                ports.append(port)
            if ports:
                spec["ports"] = ports
        workload = want["kind"] in ("Deployment", "StatefulSet")
        if workload and "replicas" not in spec and "replicas" in live_spec:
            spec["replicas"] = live_spec["replicas"]
        out["spec"] = spec
    return out


class Applier(Objects):
    """`Objects`' REST plumbing, for every kind in `KINDS`."""

    def _write(self, method: str, kind: Kind, obj: Obj, what: str) -> Obj:
        meta = obj["metadata"]
        ns = meta.get("namespace") if kind.namespaced else None
        path = kind.path(ns) if method == "POST" else kind.path(ns, meta["name"])
        status, out = self._request(method, path, what, body=obj)
        if status == 404:
            raise KubeError(f"{what}: {out.get('message', 'not found')}", status)
        return out

    def apply_one(self, want: Obj) -> str:
        kind = kind_of(want)
        meta = want["metadata"]
        ns = meta.get("namespace") if kind.namespaced else None
        what = f"{kind.kind} {ns + '/' if ns else ''}{meta['name']}"
        for _ in range(3):
            live = self.get(kind, ns, meta["name"])
            if live is None:
                try:
                    self._write("POST", kind, want, f"create {what}")
                except KubeConflict:
                    continue  # created meanwhile: compare with it
                return "created"
            if up_to_date(live, want):
                return "unchanged"
            if kind.kind == "CustomResourceDefinition":
                return "kept"  # installed by someone else (maybe newer): not ours to replace
            try:
                self._write("PUT", kind, replacement(live, want), f"replace {what}")
            except KubeConflict:
                continue  # changed meanwhile: compare again
            return "configured"
        raise KubeConflict(f"{what}: kept changing while meshfed applied it")

    def apply(self, objs: Iterable[Obj]) -> list[Result]:
        results = []
        for want in objs:
            meta = want.get("metadata") or {}
            try:
                action, error = self.apply_one(want), ""
            except KubeError as err:
                action, error = "failed", str(err)
            results.append(
                Result(
                    str(want.get("kind")),
                    meta.get("namespace"),
                    str(meta.get("name")),
                    action,
                    error,
                )
            )
        return results


def default_kubeconfig() -> str:
    return os.path.expanduser(os.environ.get("KUBECONFIG") or "~/.kube/config")


def apply_manifests(objs: list[Obj], kubeconfig: str | None, context: str | None) -> list[Result]:
    """Apply `objs` in order to the cluster of `context`; one `Result` per object.

    Raises `SourceError` when the kubeconfig or context cannot be loaded.
    """
    for obj in objs:
        kind_of(obj)  # refuse an unknown kind before writing anything
    api = Applier(load_client(kubeconfig or default_kubeconfig(), context), context or "")
    try:
        return api.apply(objs)
    finally:
        api.close()
