"""Shared pieces of the domain model: value types, field helpers, the `Record` base.

Every record validates itself in `__post_init__`, so an invalid record cannot exist
in memory, and has a `key` that is its identity in the store. Records turn into and
out of plain JSON-able dicts (`to_dict` / `from_dict`); `from_dict` rejects unknown
or missing fields with a message naming the field. `from_stored` is the fast path
for records the store validated on write. No I/O, no clock: times are passed in.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar, Self

from federation.errors import ValidationError
from federation.model import validation as v

SOURCE_KINDS = ("kubernetes", "static")
LINK_MODES = ("terminating", "passthrough")
GATEWAY_MODES = ("passthrough", "terminating")
PROTOCOLS = ("TCP", "UDP", "SCTP")  # Kubernetes core/v1 Protocol
CONDITION_STATUSES = ("True", "False", "Unknown")  # metav1.ConditionStatus
# Link condition types (DESIGN.md "Link").
LINK_CONDITIONS = ("Ready", "GatewayReachable", "CredentialsValid", "Synced")
SCOPE_CLUSTERSET = "clusterset"  # MCS: exported to every linked cluster
# metav1.Condition reason: CamelCase, letters/digits/_/,/: (apimachinery validation).
_REASON = re.compile(r"[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?")
MAX_WEIGHT = 1_000_000  # generous bound; Istio's LB weights are uint32 but 1e6 keeps sums small


def _time(fieldname: str, value: object) -> datetime:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise ValidationError(fieldname, f"{value!r} is not an RFC 3339 time") from None
    if not isinstance(value, datetime):
        raise ValidationError(fieldname, f"must be a time, got {type(value).__name__}")
    if value.tzinfo is None:
        raise ValidationError(fieldname, "must carry a timezone (RFC 3339)")
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValidationError(fieldname, f"{value} is out of range in UTC") from None


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _check_fields(cls: type, data: object) -> Mapping[str, Any]:
    """Reject non-mappings, unknown fields and missing required fields by name."""
    name = cls.__name__
    if not isinstance(data, Mapping):
        raise ValidationError(name, f"must be an object, got {type(data).__name__}")
    known = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for key in data:
        if key not in known:
            raise ValidationError(f"{name}.{key}", "unknown field")
    for fname, f in known.items():
        has_default = (
            f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        )
        if fname not in data and not has_default:
            raise ValidationError(f"{name}.{fname}", "is required")
    return data


def _tuple_of(fieldname: str, value: object) -> tuple[Any, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise ValidationError(fieldname, f"must be a list, got {type(value).__name__}")
    return tuple(value)


@dataclass(frozen=True, slots=True)
class Port:
    """A service port, shaped like Kubernetes' ServicePort / MCS ServicePort."""

    port: int
    protocol: str = "TCP"
    name: str = ""
    app_protocol: str = ""

    def __post_init__(self) -> None:
        v.port("port", self.port)
        v.choice("protocol", self.protocol, PROTOCOLS)
        if not isinstance(self.name, str):
            raise ValidationError("name", "must be a string")
        if self.name:
            v.dns1123_label("name", self.name)
        if not isinstance(self.app_protocol, str):
            raise ValidationError("app_protocol", "must be a string")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"port": self.port, "protocol": self.protocol}
        if self.name:
            out["name"] = self.name
        if self.app_protocol:
            out["app_protocol"] = self.app_protocol
        return out

    @classmethod
    def from_dict(cls, data: object) -> Port:
        d = _check_fields(cls, data)
        return cls(**d)


def _ports(fieldname: str, value: object) -> tuple[Port, ...]:
    items = _tuple_of(fieldname, value)
    ports = tuple(p if isinstance(p, Port) else Port.from_dict(p) for p in items)
    seen: set[tuple[int, str]] = set()
    for p in ports:
        if (p.port, p.protocol) in seen:
            raise ValidationError(fieldname, f"port {p.port}/{p.protocol} listed twice")
        seen.add((p.port, p.protocol))
    return ports


@dataclass(frozen=True, slots=True)
class Condition:
    """A Kubernetes-style status condition (metav1.Condition)."""

    type: str
    status: str
    reason: str
    message: str
    last_transition_time: datetime

    def __post_init__(self) -> None:
        if not isinstance(self.type, str) or not self.type:
            raise ValidationError("type", "must be a non-empty string")
        v.choice("status", self.status, CONDITION_STATUSES)
        if not isinstance(self.reason, str) or not _REASON.fullmatch(self.reason):
            raise ValidationError("reason", f"{self.reason!r} must be a CamelCase word")
        if not isinstance(self.message, str):
            raise ValidationError("message", "must be a string")
        object.__setattr__(
            self, "last_transition_time", _time("last_transition_time", self.last_transition_time)
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "status": self.status,
            "reason": self.reason,
            "message": self.message,
            "last_transition_time": _iso(self.last_transition_time),
        }

    @classmethod
    def from_dict(cls, data: object) -> Condition:
        return cls(**_check_fields(cls, data))


def _stored_time(value: Any) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _build(cls: type[Any], data: Mapping[str, Any]) -> Any:
    """Rebuild a record the store already validated on write, skipping validation.

    Decoding 100,000 endpoints for a watcher's snapshot is the registry's hottest
    path; validation on top of JSON parsing tripled its cost (see
    docs/performance.md). Fields missing from older records take their defaults.
    """
    builder = _BUILDERS.get(cls)
    if builder is None:
        builder = _BUILDERS[cls] = _compile_builder(cls)
    return builder(data)


_BUILDERS: dict[type[Any], Any] = {}


def _compile_builder(cls: type[Any]) -> Any:
    """Generate `build(data)` for `cls`, the way `dataclasses` generates `__init__`.

    One straight-line function per class: a slot assignment per field, converters
    only where the JSON type differs from the field's type.
    """
    env: dict[str, Any] = {"new": object.__new__, "cls": cls, "MISSING": dataclasses.MISSING}
    lines = ["def build(d):", "    o = new(cls)"]
    for i, f in enumerate(f for f in dataclasses.fields(cls) if f.init):
        setter = f"s{i}"
        env[setter] = getattr(cls, f.name).__set__  # the slot's descriptor
        if f.default is not dataclasses.MISSING:
            env[f"d{i}"] = f.default
            fetch = f"d.get({f.name!r}, d{i})"
        elif f.default_factory is not dataclasses.MISSING:
            env[f"f{i}"] = f.default_factory
            fetch = f"(d[{f.name!r}] if {f.name!r} in d else f{i}())"
        else:
            fetch = f"d[{f.name!r}]"
        convert = _stored_converter(str(f.type))
        if convert is not None:
            env[f"c{i}"] = convert
            fetch = f"c{i}({fetch})"
        lines.append(f"    {setter}(o, {fetch})")
    lines.append("    return o")
    exec("\n".join(lines), env)  # generated from dataclass fields only, no user input
    return env["build"]


def _stored_converter(annotation: str) -> Any:
    """How to turn a field's JSON value back into its declared type (by annotation).

    Chosen by type, not by field name, so a new record kind needs no registration.
    """
    if "datetime" in annotation:
        return _stored_time
    if annotation.startswith("tuple[Port"):
        return lambda v: tuple(_build(Port, p) for p in v)
    if annotation.startswith("tuple[Condition"):
        return lambda v: tuple(_build(Condition, c) for c in v)
    if annotation.startswith("tuple["):
        return tuple
    return None


def set_condition(conditions: Iterable[Condition], new: Condition) -> tuple[Condition, ...]:
    """Replace `new.type`'s condition (or add it); lastTransitionTime moves only when
    the status changes (metav1.Condition semantics)."""
    out: list[Condition] = []
    placed = False
    for c in conditions:
        if c.type != new.type:
            out.append(c)
            continue
        placed = True
        held = c.status == new.status
        out.append(
            dataclasses.replace(new, last_transition_time=c.last_transition_time) if held else new
        )
    if not placed:
        out.append(new)
    return tuple(out)


class Record:
    """Mixin: what the store needs of every record kind."""

    KIND: ClassVar[str]

    @classmethod
    def from_stored(cls, data: Mapping[str, Any]) -> Self:
        """Rebuild from the store's own JSON without re-validating (see `_build`)."""
        built: Self = _build(cls, data)
        return built

    @property
    def key(self) -> str:
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        """JSON-able fields: times as RFC 3339, tuples as lists, nested values as dicts."""
        return {f.name: _plain(getattr(self, f.name)) for f in _fields(type(self))}

    @classmethod
    def from_dict(cls, data: object) -> Self:
        """Validate and build; unknown or missing fields are named in the error."""
        return cls(**_check_fields(cls, data))


_FIELDS: dict[type[Any], tuple[dataclasses.Field[Any], ...]] = {}


def _fields(cls: type[Any]) -> tuple[dataclasses.Field[Any], ...]:
    found = _FIELDS.get(cls)
    if found is None:
        found = _FIELDS[cls] = tuple(f for f in dataclasses.fields(cls) if f.init)
    return found


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, (Port, Condition)):
        return value.to_dict()
    return value
