"""A small facade over the official `kubernetes` client, on raw JSON dicts.

Everything above this module sees camelCase dicts exactly as the API server sends
them (what the pure translators take) and `DiscoveryError`s: `ApiException` and
urllib3 errors are translated here, once (410 -> `Gone`, 409 -> `KubeConflict`,
the rest -> `KubeError` with the HTTP status). Calls block; the shells run them
in threads. Reads use `_preload_content=False` so no model objects are built.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import urllib3.exceptions
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from discovery_sync.errors import Gone, KubeConflict, KubeError, SourceError

Obj = dict[str, Any]
T = TypeVar("T")

MCS_GROUP = "multicluster.x-k8s.io"
MCS_VERSION = "v1alpha1"  # the version meshfed reads and writes (CRDs serve both)
WATCH_TIMEOUT = 300  # seconds per watch request; the API server caps at 30 min anyway


@dataclass(frozen=True, slots=True)
class Resource:
    """A resource meshfed reads or writes: how to name it in each client API."""

    plural: str
    kind: str
    group: str = ""
    version: str = "v1"

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


SERVICES = Resource("services", "Service")
ENDPOINT_SLICES = Resource("endpointslices", "EndpointSlice", "discovery.k8s.io")
SERVICE_EXPORTS = Resource("serviceexports", "ServiceExport", MCS_GROUP, MCS_VERSION)
SERVICE_IMPORTS = Resource("serviceimports", "ServiceImport", MCS_GROUP, MCS_VERSION)
CONFIG_MAPS = Resource("configmaps", "ConfigMap")  # only meshfed-registry-ca (registry_ca.py)


# Built-in resources through their typed API: plural -> (KubeApi attribute, singular).
_TYPED = {
    "services": ("core", "service"),
    "endpointslices": ("discovery", "endpoint_slice"),
    "configmaps": ("core", "config_map"),
}


def _translate(err: Exception, what: str) -> KubeError:
    if isinstance(err, ApiException):
        message = f"{what}: HTTP {err.status}"
        try:
            body = json.loads(err.body or "{}")
            message += f" {body.get('reason', '')}: {body.get('message', '')}".rstrip(": ")
        except (ValueError, AttributeError):
            message += f" {err.reason}"
        if err.status == 410:
            return Gone(message)
        if err.status == 409:
            return KubeConflict(message)
        return KubeError(message, err.status)
    return KubeError(f"{what}: {err}")


_FOREIGN = (ApiException, urllib3.exceptions.HTTPError, OSError, ValueError)


def load_client(kubeconfig: str | None, context: str | None) -> client.ApiClient:
    """An ApiClient from a kubeconfig (and context), or the in-cluster service account."""
    configuration = client.Configuration()
    try:
        if kubeconfig is None:
            config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        else:
            config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=kubeconfig, context=context, client_configuration=configuration
            )
    except (ConfigException, OSError, ValueError, TypeError) as err:
        where = "--kubeconfig" if kubeconfig else "in-cluster config"
        raise SourceError(where, str(err)) from err
    return client.ApiClient(configuration)


class KubeApi:
    """list / watch / write the resources meshfed uses, on raw dicts."""

    def __init__(self, api_client: client.ApiClient) -> None:
        self.api_client = api_client
        self.core = client.CoreV1Api(api_client)
        self.discovery = client.DiscoveryV1Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)

    def _call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except _FOREIGN as err:
            raise _translate(err, what) from err

    def _raw(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Obj:
        def run() -> Obj:
            resp = fn(*args, _preload_content=False, **kwargs)
            data: Obj = json.loads(resp.data)
            return data

        result: Obj = self._call(what, run)
        return result

    def _list_fn(
        self, res: Resource, namespace: str | None
    ) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        if res.group == MCS_GROUP:
            if namespace:
                return self.custom.list_namespaced_custom_object, (
                    res.group,
                    res.version,
                    namespace,
                    res.plural,
                )
            return self.custom.list_cluster_custom_object, (res.group, res.version, res.plural)
        table = {
            "services": (
                self.core.list_namespaced_service,
                self.core.list_service_for_all_namespaces,
            ),
            "endpointslices": (
                self.discovery.list_namespaced_endpoint_slice,
                self.discovery.list_endpoint_slice_for_all_namespaces,
            ),
        }
        namespaced, everywhere = table[res.plural]
        return (namespaced, (namespace,)) if namespace else (everywhere, ())

    def list(
        self, res: Resource, namespace: str | None = None, label_selector: str | None = None
    ) -> tuple[list[Obj], str]:
        """All objects (following `continue`) and the list's resourceVersion."""
        fn, args = self._list_fn(res, namespace)
        items: list[Obj] = []
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"limit": 500}
            if label_selector:
                kwargs["label_selector"] = label_selector
            if token:
                kwargs["_continue"] = token
            page = self._raw(f"list {res.plural}", fn, *args, **kwargs)
            items.extend(page.get("items") or [])
            meta = page.get("metadata") or {}
            token = meta.get("continue")
            if not token:
                return items, str(meta.get("resourceVersion", ""))

    def watch(
        self,
        res: Resource,
        resource_version: str,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        timeout_seconds: int = WATCH_TIMEOUT,
        on_response: Callable[[Any], None] | None = None,
    ) -> Iterator[Obj]:
        """Watch events after `resource_version`, bookmarks on; ERROR 410 -> `Gone`."""
        fn, args = self._list_fn(res, namespace)
        kwargs: dict[str, Any] = {
            "watch": True,
            "resource_version": resource_version,
            "allow_watch_bookmarks": True,
            "timeout_seconds": timeout_seconds,
            "_preload_content": False,
        }
        if label_selector:
            kwargs["label_selector"] = label_selector
        resp = self._call(f"watch {res.plural}", fn, *args, **kwargs)
        if on_response is not None:
            on_response(resp)
        buffer = b""
        try:
            for chunk in resp.stream(amt=None, decode_content=False):
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    if not line.strip():
                        continue
                    event: Obj = json.loads(line)
                    if event.get("type") == "ERROR":
                        status = event.get("object") or {}
                        message = f"watch {res.plural}: {status.get('message', 'error')}"
                        if status.get("code") == 410:
                            raise Gone(message)
                        raise KubeError(message, status.get("code"))
                    yield event
        except (urllib3.exceptions.HTTPError, OSError, ValueError) as err:
            raise KubeError(f"watch {res.plural}: connection lost: {err}") from err
        finally:
            resp.release_conn()

    def get(self, res: Resource, namespace: str, name: str) -> Obj:
        what = f"get {res.kind} {namespace}/{name}"
        if res.group == MCS_GROUP:
            return self._raw(
                what,
                self.custom.get_namespaced_custom_object,
                res.group,
                res.version,
                namespace,
                res.plural,
                name,
            )
        return self._raw(what, self._typed("read", res), name, namespace)

    # --- writes ---------------------------------------------------------------------

    def create(self, res: Resource, namespace: str, body: Obj) -> Obj:
        what = f"create {res.kind} {namespace}/{body['metadata']['name']}"
        if res.group == MCS_GROUP:
            return self._raw(
                what,
                self.custom.create_namespaced_custom_object,
                res.group,
                res.version,
                namespace,
                res.plural,
                body,
            )
        fn = self._typed("create", res)
        return self._raw(what, fn, namespace, body)

    def replace(self, res: Resource, namespace: str, name: str, body: Obj) -> Obj:
        what = f"replace {res.kind} {namespace}/{name}"
        if res.group == MCS_GROUP:
            return self._raw(
                what,
                self.custom.replace_namespaced_custom_object,
                res.group,
                res.version,
                namespace,
                res.plural,
                name,
                body,
            )
        fn = self._typed("replace", res)
        return self._raw(what, fn, name, namespace, body)

    def replace_status(self, res: Resource, namespace: str, name: str, body: Obj) -> Obj:
        """PUT the status subresource (MCS objects only)."""
        return self._raw(
            f"update {res.kind} {namespace}/{name} status",
            self.custom.replace_namespaced_custom_object_status,
            res.group,
            res.version,
            namespace,
            res.plural,
            name,
            body,
        )

    def delete(self, res: Resource, namespace: str, name: str) -> None:
        what = f"delete {res.kind} {namespace}/{name}"
        if res.group == MCS_GROUP:
            self._raw(
                what,
                self.custom.delete_namespaced_custom_object,
                res.group,
                res.version,
                namespace,
                res.plural,
                name,
            )
            return
        fn = self._typed("delete", res)
        self._raw(what, fn, name, namespace)

    def _typed(self, verb: str, res: Resource) -> Callable[..., Any]:
        api, singular = _TYPED[res.plural]
        fn: Callable[..., Any] = getattr(getattr(self, api), f"{verb}_namespaced_{singular}")
        return fn

    def close(self) -> None:
        self.api_client.close()  # type: ignore[no-untyped-call]
