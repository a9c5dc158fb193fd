"""The fake API server's state: objects, one global resourceVersion, an event history.

Semantics follow the real API server over etcd: every write takes the next value
of one cluster-wide counter as the object's `resourceVersion`; a list carries the
counter's current value; a watch replays the history after a given version, and
answers 410 Gone once that history has been compacted away. A write that changes
nothing is a no-op (no new version, no event), as in the API server. Objects of one
group/resource are shared by all its versions (v1alpha1 and v1beta1 ServiceExports
are the same objects), each read stamped with the version asked for.
"""

from __future__ import annotations

import copy
import re
import secrets
import threading
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tests.fakekube.resources import ResourceType
from tests.fakekube.schema import validate

Obj = dict[str, Any]
StoreKey = tuple[str, str]  # (group, plural)

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
_LABEL_NAME = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


class ApiError(Exception):
    """An API error, rendered as a `Status` object with this HTTP code and reason."""

    def __init__(self, code: int, reason: str, message: str, details: Obj | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def status(self) -> Obj:
        out: Obj = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            out["details"] = self.details
        return out


@dataclass(frozen=True)
class Event:
    rv: int
    type: str  # ADDED, MODIFIED, DELETED
    key: StoreKey
    obj: Obj
    old: Obj | None  # the object before, to decide selector transitions


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


class Store:
    """Thread-safe object store; `changed` is notified on every event."""

    def __init__(self, types: list[ResourceType], *, max_history: int = 100_000) -> None:
        self.types = {t.key: t for t in types}
        self.changed = threading.Condition()
        self.rv = 100
        self.compacted = 0  # watches from a version below this get 410 Gone
        self.objects: dict[StoreKey, dict[tuple[str, str], Obj]] = {}
        self.history: deque[Event] = deque()
        self.max_history = max_history
        self.cluster_ip = 0
        self.fail_next: list[tuple[Callable[[str, ResourceType], bool], ApiError]] = []
        for ns in ("default", "kube-system", "kube-public"):
            self.create(self.type("", "v1", "namespaces"), "", {"metadata": {"name": ns}})

    # --- lookup -----------------------------------------------------------------

    def type(self, group: str, version: str, plural: str) -> ResourceType:
        rt = self.types.get((group, version, plural))
        if rt is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        return rt

    def _bucket(self, rt: ResourceType) -> dict[tuple[str, str], Obj]:
        return self.objects.setdefault((rt.group, rt.plural), {})

    def _out(self, rt: ResourceType, obj: Obj) -> Obj:
        out = copy.deepcopy(obj)
        out["apiVersion"] = rt.api_version
        out["kind"] = rt.kind
        return out

    def get(self, rt: ResourceType, namespace: str, name: str) -> Obj:
        with self.changed:
            obj = self._bucket(rt).get((namespace, name))
            if obj is None:
                raise ApiError(
                    404,
                    "NotFound",
                    f'{rt.plural} "{name}" not found',
                    {"name": name, "group": rt.group, "kind": rt.plural},
                )
            return self._out(rt, obj)

    def list(
        self, rt: ResourceType, namespace: str, match: Callable[[Obj], bool]
    ) -> tuple[list[Obj], int]:
        with self.changed:
            items = [
                self._out(rt, o)
                for (ns, _), o in sorted(self._bucket(rt).items())
                if (not namespace or ns == namespace) and match(o)
            ]
            return items, self.rv

    # --- writes -----------------------------------------------------------------

    def _check_failures(self, verb: str, rt: ResourceType) -> None:
        for i, (pred, err) in enumerate(self.fail_next):
            if pred(verb, rt):
                del self.fail_next[i]
                raise err

    def _emit(self, rt: ResourceType, type_: str, obj: Obj, old: Obj | None) -> None:
        self.history.append(Event(self.rv, type_, (rt.group, rt.plural), copy.deepcopy(obj), old))
        while len(self.history) > self.max_history:
            dropped = self.history.popleft()
            self.compacted = max(self.compacted, dropped.rv)
        self.changed.notify_all()

    def _validate(self, rt: ResourceType, obj: Obj, namespace: str) -> None:
        meta = obj.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise ApiError(400, "BadRequest", "metadata must be an object")
        name = meta.get("name")
        causes = []
        if rt.namespaced:
            if meta.get("namespace") not in (None, namespace):
                raise ApiError(
                    400,
                    "BadRequest",
                    "the namespace of the provided object does not match the "
                    "namespace sent on the request",
                )
            meta["namespace"] = namespace
        name_re = {"namespaces": _DNS1123_LABEL, "services": _DNS1035_LABEL}.get(
            rt.plural, _DNS1123_SUBDOMAIN
        )
        if not isinstance(name, str) or not name_re.match(name) or len(name) > 253:
            causes.append(
                f"metadata.name: Invalid value: {name!r}: a lowercase RFC 1123 name "
                "must consist of lower case alphanumeric characters or '-'"
            )
        for key, value in (meta.get("labels") or {}).items():
            prefix, _, lname = key.rpartition("/")
            if (
                (prefix and not _DNS1123_SUBDOMAIN.match(prefix))
                or not _LABEL_NAME.match(lname)
                or len(lname) > 63
            ):
                causes.append(f"metadata.labels: Invalid value: {key!r}: name part must be valid")
            if not isinstance(value, str) or len(value) > 63 or not _LABEL_VALUE.match(value):
                causes.append(
                    f"metadata.labels: Invalid value: {value!r}: a valid label must "
                    "be an empty string or consist of alphanumeric characters"
                )
        if rt.schema is not None:
            body = {k: v for k, v in obj.items() if k != "metadata"}
            causes += validate(body, rt.schema)
            obj.update(body)
            for k in [k for k in obj if k != "metadata" and k not in body]:
                del obj[k]
        if rt.plural == "endpointslices" and obj.get("addressType") not in ("IPv4", "IPv6", "FQDN"):
            causes.append(f"addressType: Unsupported value: {obj.get('addressType')!r}")
        if rt.plural == "leases":
            causes += _lease_causes(obj)
        if causes:
            raise ApiError(
                422,
                "Invalid",
                f'{rt.kind} "{name}" is invalid: ' + ", ".join(causes),
                {"name": name, "kind": rt.kind, "causes": [{"message": c} for c in causes]},
            )

    def _defaults(self, rt: ResourceType, obj: Obj) -> None:
        if rt.plural == "services":
            spec = obj.setdefault("spec", {})
            spec.setdefault("type", "ClusterIP")
            if "clusterIP" not in spec and spec["type"] != "ExternalName":
                self.cluster_ip += 1
                spec["clusterIP"] = f"10.96.{self.cluster_ip // 250}.{self.cluster_ip % 250 + 1}"
            for port in spec.get("ports") or []:
                port.setdefault("protocol", "TCP")
                port.setdefault("targetPort", port.get("port"))
        if rt.plural == "endpointslices":
            for port in obj.get("ports") or []:
                port.setdefault("protocol", "TCP")

    def create(self, rt: ResourceType, namespace: str, body: Obj) -> Obj:
        with self.changed:
            self._check_failures("create", rt)
            obj = copy.deepcopy(body)
            meta = obj.setdefault("metadata", {}) if isinstance(obj, dict) else None
            if meta is None:
                raise ApiError(400, "BadRequest", "the body must be an object")
            if not meta.get("name") and meta.get("generateName"):
                meta["name"] = meta["generateName"] + secrets.token_hex(3)[:5]
            namespaces = self.objects.get(("", "namespaces"), {})
            if rt.namespaced and ("", namespace) not in namespaces:
                raise ApiError(404, "NotFound", f'namespaces "{namespace}" not found')
            self._validate(rt, obj, namespace)
            key = (namespace if rt.namespaced else "", meta["name"])
            bucket = self._bucket(rt)
            if key in bucket:
                raise ApiError(
                    409,
                    "AlreadyExists",
                    f'{rt.plural} "{meta["name"]}" already exists',
                    {"name": meta["name"], "kind": rt.plural},
                )
            self._defaults(rt, obj)
            self.rv += 1
            meta.update(
                uid=str(uuid.uuid4()),
                resourceVersion=str(self.rv),
                creationTimestamp=_now(),
                generation=1,
            )
            if rt.plural == "namespaces":
                obj["status"] = {"phase": "Active"}
            obj.pop("apiVersion", None)
            obj.pop("kind", None)
            bucket[key] = obj
            self._emit(rt, "ADDED", obj, None)
            return self._out(rt, obj)

    def update(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        body: Obj,
        *,
        status: bool = False,
        verb: str = "update",
    ) -> Obj:
        with self.changed:
            self._check_failures(verb, rt)
            key = (namespace if rt.namespaced else "", name)
            bucket = self._bucket(rt)
            old = bucket.get(key)
            if old is None:
                raise ApiError(
                    404,
                    "NotFound",
                    f'{rt.plural} "{name}" not found',
                    {"name": name, "kind": rt.plural},
                )
            if not isinstance(body, dict):
                raise ApiError(400, "BadRequest", "the body must be an object")
            obj = copy.deepcopy(body)
            meta = obj.setdefault("metadata", {})
            if meta.get("name", name) != name:
                raise ApiError(
                    400, "BadRequest", "the name of the object does not match the name on the URL"
                )
            meta["name"] = name
            want = meta.get("resourceVersion")
            if want and want != old["metadata"]["resourceVersion"]:
                raise ApiError(
                    409,
                    "Conflict",
                    f'Operation cannot be fulfilled on {rt.plural} "{name}": the '
                    "object has been modified; please apply your changes to the "
                    "latest version and try again",
                    {"name": name, "kind": rt.plural},
                )
            if rt.status_subresource:
                if status:  # only status changes through /status
                    new = copy.deepcopy(old)
                    if "status" in obj:
                        new["status"] = obj["status"]
                    else:
                        new.pop("status", None)
                    obj = new
                elif "status" in old:
                    obj["status"] = copy.deepcopy(old["status"])
                else:
                    obj.pop("status", None)
            self._validate(rt, obj, namespace)
            self._defaults(rt, obj)
            for immutable in ("uid", "creationTimestamp", "generation", "resourceVersion"):
                if immutable in old["metadata"]:
                    obj["metadata"][immutable] = old["metadata"][immutable]
            obj.pop("apiVersion", None)
            obj.pop("kind", None)
            if obj == old:
                return self._out(rt, old)  # a no-op write: no new version, no event
            if _spec_part(obj) != _spec_part(old):
                obj["metadata"]["generation"] = old["metadata"].get("generation", 1) + 1
            self.rv += 1
            obj["metadata"]["resourceVersion"] = str(self.rv)
            bucket[key] = obj
            self._emit(rt, "MODIFIED", obj, old)
            return self._out(rt, obj)

    def patch(
        self, rt: ResourceType, namespace: str, name: str, patch: Obj, *, status: bool = False
    ) -> Obj:
        with self.changed:
            current = self.get(rt, namespace, name)
            merged = merge_patch(current, patch)
            if not (
                isinstance(patch.get("metadata"), dict) and "resourceVersion" in patch["metadata"]
            ):
                merged["metadata"].pop("resourceVersion", None)  # no precondition
            return self.update(rt, namespace, name, merged, status=status, verb="patch")

    def delete(self, rt: ResourceType, namespace: str, name: str) -> Obj:
        with self.changed:
            self._check_failures("delete", rt)
            key = (namespace if rt.namespaced else "", name)
            bucket = self._bucket(rt)
            old = bucket.pop(key, None)
            if old is None:
                raise ApiError(
                    404,
                    "NotFound",
                    f'{rt.plural} "{name}" not found',
                    {"name": name, "kind": rt.plural},
                )
            self.rv += 1
            gone = copy.deepcopy(old)
            gone["metadata"]["resourceVersion"] = str(self.rv)
            self._emit(rt, "DELETED", gone, old)
            if rt.plural == "namespaces":
                for (group, plural), objs in self.objects.items():
                    for k in [k for k in objs if k[0] == name]:
                        other = next(
                            t for t in self.types.values() if (t.group, t.plural) == (group, plural)
                        )
                        self.delete(other, name, k[1])
            return self._out(rt, gone)

    # --- watch support --------------------------------------------------------------

    def events_after(self, rv: int) -> list[Event]:
        """History after `rv`; raises 410 Gone when part of it was compacted."""
        if rv < self.compacted:
            raise ApiError(410, "Expired", f"too old resource version: {rv} ({self.compacted})")
        return [e for e in self.history if e.rv > rv]

    def compact(self) -> int:
        """Forget all history (as etcd compaction does): older versions now get 410."""
        with self.changed:
            self.history.clear()
            self.compacted = self.rv
            return self.compacted


def _micro_time(field: str, value: Any) -> str:
    """A `metav1.MicroTime` as the API server stores it: RFC 3339, UTC, 6 digits.

    An unparsable value fails decoding (400), as it does in the API server.
    """
    try:
        if not isinstance(value, str):
            raise ValueError(value)
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        if parsed.tzinfo is None:
            raise ValueError(value)
    except ValueError:
        raise ApiError(
            400, "BadRequest", f"{field}: parsing time {value!r} as RFC 3339 failed"
        ) from None
    return parsed.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _lease_causes(obj: Obj) -> list[str]:
    """`coordination.k8s.io/v1` LeaseSpec: decoding (400) then validation (422).

    Mirrors pkg/apis/coordination/validation: leaseDurationSeconds > 0 and
    leaseTransitions >= 0 when set; times normalised to MicroTime's format.
    """
    spec = obj.get("spec")
    if spec is None:
        return []
    if not isinstance(spec, dict):
        raise ApiError(400, "BadRequest", "spec: expected an object")
    for field in ("holderIdentity", "strategy", "preferredHolder"):
        if spec.get(field) is not None and not isinstance(spec[field], str):
            raise ApiError(400, "BadRequest", f"spec.{field}: expected a string")
    for field in ("leaseDurationSeconds", "leaseTransitions"):
        value = spec.get(field)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise ApiError(400, "BadRequest", f"spec.{field}: expected an integer")
    for field in ("acquireTime", "renewTime"):
        if spec.get(field) is not None:
            spec[field] = _micro_time(f"spec.{field}", spec[field])
    causes = []
    duration = spec.get("leaseDurationSeconds")
    if duration is not None and duration <= 0:
        causes.append(
            f"spec.leaseDurationSeconds: Invalid value: {duration}: must be greater than 0"
        )
    transitions = spec.get("leaseTransitions")
    if transitions is not None and transitions < 0:
        causes.append(
            f"spec.leaseTransitions: Invalid value: {transitions}: "
            "must be greater than or equal to 0"
        )
    return causes


def _spec_part(obj: Mapping[str, Any]) -> Obj:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status")}
