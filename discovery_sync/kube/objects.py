"""Generic get / list / ensure / delete of Kubernetes objects on raw dicts.

`meshfed link` (the CLI is the composition root; the Kubernetes client may only be
imported under discovery_sync) writes a handful of kinds the agent itself never
touches: Namespace, ServiceAccount, Secret, ConfigMap and RBAC. This module does it
through the official client's plain REST call, one code path for every kind, with
the API server's paths, so adding a kind is one `Kind(...)` line.

Writes compare before they write: `ensure` creates a missing object, leaves alone an
object that already carries every label, annotation and top-level field asked for
(no PUT, so no new resourceVersion), and otherwise replaces it with optimistic
concurrency, keeping labels and annotations that others put there.

Objects shared by several links of one cluster (the `meshfed-system` namespace, the
agent's service account, the mesh's CA Secret) carry the links using them in the
annotation `meshfed.io/links`; `release` removes a link from it and deletes the
object once no link is left (a namespace only when nothing else lives in it).
Objects not labelled `app.kubernetes.io/managed-by=meshfed` are never changed or
deleted.
"""

from __future__ import annotations

import builtins
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

import urllib3.exceptions
import yaml
from kubernetes import client

from discovery_sync.errors import KubeConflict, KubeError, SourceError
from discovery_sync.kube.api import load_client

Obj = dict[str, Any]

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "meshfed"
LINKS_ANNOTATION = "meshfed.io/links"

Outcome = Literal["created", "updated", "unchanged", "foreign"]
Released = Literal["deleted", "released", "kept", "absent", "foreign"]


@dataclass(frozen=True, slots=True)
class Kind:
    kind: str
    plural: str
    group: str = ""
    version: str = "v1"
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self, namespace: str | None = None, name: str | None = None) -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        return f"{base}/{name}" if name else base


_RBAC = "rbac.authorization.k8s.io"
NAMESPACE = Kind("Namespace", "namespaces", namespaced=False)
SERVICE_ACCOUNT = Kind("ServiceAccount", "serviceaccounts")
SECRET = Kind("Secret", "secrets")
CONFIG_MAP = Kind("ConfigMap", "configmaps")
ROLE = Kind("Role", "roles", _RBAC)
ROLE_BINDING = Kind("RoleBinding", "rolebindings", _RBAC)
CLUSTER_ROLE = Kind("ClusterRole", "clusterroles", _RBAC, namespaced=False)
CLUSTER_ROLE_BINDING = Kind("ClusterRoleBinding", "clusterrolebindings", _RBAC, namespaced=False)
KINDS = {
    k.kind: k
    for k in (
        NAMESPACE,
        SERVICE_ACCOUNT,
        SECRET,
        CONFIG_MAP,
        ROLE,
        ROLE_BINDING,
        CLUSTER_ROLE,
        CLUSTER_ROLE_BINDING,
    )
}

# What may live in a namespace, for "is it empty?"; kinds a server does not serve are
# skipped. The API server puts `default` and `kube-root-ca.crt` in every namespace.
_CONTENT = (
    SERVICE_ACCOUNT,
    SECRET,
    CONFIG_MAP,
    ROLE,
    ROLE_BINDING,
    Kind("Service", "services"),
    Kind("Pod", "pods"),
    Kind("Deployment", "deployments", "apps"),
    Kind("StatefulSet", "statefulsets", "apps"),
    Kind("DaemonSet", "daemonsets", "apps"),
    Kind("Lease", "leases", "coordination.k8s.io"),
)
_BUILT_IN = {("ServiceAccount", "default"), ("ConfigMap", "kube-root-ca.crt")}


def kind_of(obj: Obj) -> Kind:
    try:
        return KINDS[obj["kind"]]
    except KeyError:
        raise KubeError(f"meshfed does not write {obj.get('kind')!r} objects") from None


def describe(obj: Obj) -> str:
    """`Secret meshfed-system/name` or `ClusterRole name`."""
    meta = obj["metadata"]
    where = f"{meta['namespace']}/" if meta.get("namespace") else ""
    return f"{obj['kind']} {where}{meta['name']}"


def managed(obj: Obj) -> bool:
    return bool((obj.get("metadata") or {}).get("labels", {}).get(MANAGED_BY_LABEL) == MANAGED_BY)


def refs(obj: Obj) -> set[str]:
    text = ((obj.get("metadata") or {}).get("annotations") or {}).get(LINKS_ANNOTATION, "")
    return {r for r in str(text).split(",") if r}


def covers(live: Obj, want: Obj) -> bool:
    """Does `live` already carry everything `want` asks for?"""
    have_meta, want_meta = live.get("metadata") or {}, want.get("metadata") or {}
    for part in ("labels", "annotations"):
        have = have_meta.get(part) or {}
        if any(have.get(k) != v for k, v in (want_meta.get(part) or {}).items()):
            return False
    return all(
        live.get(k) == v for k, v in want.items() if k not in ("metadata", "apiVersion", "kind")
    )


def contexts(kubeconfig: str) -> list[str]:
    """The context names of a kubeconfig file; `SourceError` if it is not one."""
    try:
        with open(kubeconfig) as f:
            data = yaml.safe_load(f)
    except (OSError, yaml.YAMLError) as err:
        raise SourceError(kubeconfig, f"not a readable kubeconfig: {err}") from err
    if not isinstance(data, dict) or not isinstance(data.get("contexts") or [], list):
        raise SourceError(kubeconfig, "not a kubeconfig (no contexts list)")
    return [str(c.get("name")) for c in data.get("contexts") or [] if isinstance(c, dict)]


class Objects:
    """One cluster's API, for the kinds in `KINDS`."""

    def __init__(self, api_client: client.ApiClient, name: str = "") -> None:
        self.api_client = api_client
        self.name = name  # for messages: the kubeconfig context

    @classmethod
    def connect(cls, kubeconfig: str | None, context: str | None) -> Objects:
        return cls(load_client(kubeconfig, context), context or "")

    def close(self) -> None:
        self.api_client.close()  # type: ignore[no-untyped-call]

    def __enter__(self) -> Objects:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- plumbing -----------------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        what: str,
        *,
        query: list[tuple[str, str]] | None = None,
        body: Obj | None = None,
    ) -> tuple[int, Obj]:
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        try:
            m, url, hdrs, data, post = self.api_client.param_serialize(
                method,
                path,
                query_params=query or [],
                header_params=headers,
                body=body,
                auth_settings=["BearerToken"],
            )
            response = self.api_client.call_api(m, url, hdrs, data, post)
            response.read()  # type: ignore[no-untyped-call]
            raw = response.data or b"{}"
            status = int(response.status)
        except (urllib3.exceptions.HTTPError, OSError, ValueError) as err:
            raise KubeError(f"{what}: {err}") from err
        try:
            payload = json.loads(raw)
        except ValueError:
            payload = {"message": raw[:200].decode(errors="replace")}
        if not isinstance(payload, dict):
            payload = {}
        if status >= 400 and status != 404:
            message = f"{what}: HTTP {status}"
            if payload.get("reason") or payload.get("message"):
                message += f" {payload.get('reason', '')}: {payload.get('message', '')}"
            if status == 409:
                raise KubeConflict(message)
            raise KubeError(message, status)
        return status, payload

    # --- reads --------------------------------------------------------------------

    def get(self, kind: Kind, namespace: str | None, name: str) -> Obj | None:
        where = f"{namespace}/{name}" if kind.namespaced else name
        status, obj = self._request("GET", kind.path(namespace, name), f"get {kind.kind} {where}")
        return None if status == 404 else obj

    def list(
        self, kind: Kind, namespace: str | None = None, label_selector: str | None = None
    ) -> list[Obj]:
        """Every object (following `continue`); [] when the server does not serve `kind`."""
        items: list[Obj] = []
        query: list[tuple[str, str]] = [("limit", "500")]
        if label_selector:
            query.append(("labelSelector", label_selector))
        while True:
            status, page = self._request(
                "GET", kind.path(namespace), f"list {kind.plural}", query=query
            )
            if status == 404:
                return items
            for item in page.get("items") or []:
                items.append({"apiVersion": kind.api_version, "kind": kind.kind, **item})
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return items
            query = [q for q in query if q[0] != "continue"] + [("continue", token)]

    # --- writes -------------------------------------------------------------------

    def create(self, obj: Obj) -> Obj:
        kind = kind_of(obj)
        ns = obj["metadata"].get("namespace")
        status, out = self._request("POST", kind.path(ns), f"create {describe(obj)}", body=obj)
        if status == 404:
            raise KubeError(f"create {describe(obj)}: {out.get('message', 'not found')}", status)
        return out

    def replace(self, obj: Obj) -> Obj:
        kind = kind_of(obj)
        meta = obj["metadata"]
        status, out = self._request(
            "PUT",
            kind.path(meta.get("namespace"), meta["name"]),
            f"replace {describe(obj)}",
            body=obj,
        )
        if status == 404:
            raise KubeError(f"replace {describe(obj)}: gone", status)
        return out

    def delete(self, kind: Kind, namespace: str | None, name: str) -> bool:
        """Delete; False when it was already gone."""
        where = f"{namespace}/{name}" if kind.namespaced else name
        status, _ = self._request(
            "DELETE", kind.path(namespace, name), f"delete {kind.kind} {where}"
        )
        return status != 404

    def ensure(self, want: Obj) -> Outcome:
        """Create `want`, or bring the live object to it; no write when it is there."""
        kind = kind_of(want)
        meta = want["metadata"]
        for _ in range(3):
            live = self.get(kind, meta.get("namespace"), meta["name"])
            if live is None:
                try:
                    self.create(want)
                except KubeConflict:
                    continue  # created meanwhile: compare with it
                return "created"
            if covers(live, want):
                return "unchanged"
            try:
                self.replace(_merged(live, want))
            except KubeConflict:
                continue  # changed meanwhile: compare again
            return "updated"
        raise KubeConflict(f"{describe(want)}: kept changing while meshfed wrote it")

    def ensure_shared(self, want: Obj, ref: str) -> Outcome:
        """`ensure` for an object several links use: `ref` joins its `meshfed.io/links`.

        An object that exists without meshfed's managed-by label is someone else's:
        left as it is ("foreign").
        """
        kind = kind_of(want)
        meta = want["metadata"]
        live = self.get(kind, meta.get("namespace"), meta["name"])
        if live is not None and not managed(live):
            return "foreign"
        users = (refs(live) if live is not None else set()) | {ref}
        wanted = _with_annotation(want, LINKS_ANNOTATION, ",".join(sorted(users)))
        return self.ensure(wanted)

    def release(
        self, kind: Kind, namespace: str | None, name: str, gone: Iterable[str]
    ) -> Released:
        """Drop the links `gone` from a shared object; delete it when none is left."""
        gone = set(gone)
        for _ in range(3):
            live = self.get(kind, namespace, name)
            if live is None:
                return "absent"
            if not managed(live):
                return "foreign"
            users = refs(live)
            if not users & gone:
                return "kept" if users else "absent"
            left = users - gone
            if left:
                updated = _with_annotation(live, LINKS_ANNOTATION, ",".join(sorted(left)))
                try:
                    self.replace(updated)
                except KubeConflict:
                    continue
                return "released"
            if kind == NAMESPACE and self.occupants(name):
                updated = _with_annotation(live, LINKS_ANNOTATION, None)
                try:
                    self.replace(updated)
                except KubeConflict:
                    continue
                return "kept"
            self.delete(kind, namespace, name)
            return "deleted"
        raise KubeConflict(f"{kind.kind} {name}: kept changing while meshfed released it")

    def occupants(self, namespace: str) -> builtins.list[str]:
        """What lives in `namespace` besides what the API server puts in every one."""
        out = []
        for kind in _CONTENT:
            for item in self.list(kind, namespace):
                name = item["metadata"]["name"]
                if (kind.kind, name) not in _BUILT_IN:
                    out.append(f"{kind.kind} {name}")
        return out


def _merged(live: Obj, want: Obj) -> Obj:
    """`live` with `want`'s labels, annotations and top-level fields, for a PUT."""
    out = {k: v for k, v in live.items() if k in ("apiVersion", "kind", "metadata", "status")}
    out["apiVersion"], out["kind"] = want["apiVersion"], want["kind"]
    meta = dict(live["metadata"])
    for part in ("labels", "annotations"):
        merged = {**(meta.get(part) or {}), **(want["metadata"].get(part) or {})}
        if merged:
            meta[part] = merged
    out["metadata"] = meta
    for key, value in live.items():
        if key not in out and key not in want:
            out[key] = value
    out.update({k: v for k, v in want.items() if k not in ("metadata", "apiVersion", "kind")})
    return out


def _with_annotation(obj: Obj, key: str, value: str | None) -> Obj:
    meta = dict(obj["metadata"])
    annotations = dict(meta.get("annotations") or {})
    if value is None:
        annotations.pop(key, None)
    else:
        annotations[key] = value
    meta["annotations"] = annotations
    return {**obj, "metadata": meta}
