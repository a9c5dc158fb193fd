"""Terraform value types that `tf` 1.0.1 lacks: `map(T)` and `object({...})`.

Why this module exists: cluster labels and CA file sets are maps, and the
services data source returns a list of objects; `tf` ships only string, number,
bool, list and set. A type here is what `tf` expects of one (`encode`, `decode`,
`semantically_equal`, `tf_type`): values travel as msgpack maps, so encoding is
mostly the identity, element types applied recursively.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Protocol


class TfType(Protocol):
    """The interface `tf` calls on an attribute's type."""

    def encode(self, value: Any) -> Any: ...

    def decode(self, value: Any) -> Any: ...

    def semantically_equal(self, a: Any, b: Any) -> bool: ...

    def tf_type(self) -> bytes: ...


def _known(value: Any) -> bool:
    """False for null and for `tf`'s Unknown marker (compared by type name: no import)."""
    return value is not None and type(value).__name__ != "_Unknown"


class Map:
    """`map(<element>)`: string keys, values of one type."""

    def __init__(self, element: TfType) -> None:
        self.element = element

    def encode(self, value: Any) -> Any:
        if not _known(value):
            return value
        return {str(k): self.element.encode(v) for k, v in value.items()}

    def decode(self, value: Any) -> Any:
        if not _known(value):
            return value
        return {str(k): self.element.decode(v) for k, v in value.items()}

    def semantically_equal(self, a: Any, b: Any) -> bool:
        return bool(a == b)

    def tf_type(self) -> bytes:
        return f'["map",{self.element.tf_type().decode()}]'.encode()


class Object:
    """`object({name = type, ...})`: every attribute present, null where unset."""

    def __init__(self, attributes: Mapping[str, TfType]) -> None:
        self.attributes = dict(attributes)

    def encode(self, value: Any) -> Any:
        if not _known(value):
            return value
        return {k: t.encode(value.get(k)) for k, t in self.attributes.items()}

    def decode(self, value: Any) -> Any:
        if not _known(value):
            return value
        return {k: t.decode(value.get(k)) for k, t in self.attributes.items()}

    def semantically_equal(self, a: Any, b: Any) -> bool:
        return bool(a == b)

    def tf_type(self) -> bytes:
        fields = {k: json.loads(t.tf_type()) for k, t in self.attributes.items()}
        return json.dumps(["object", fields], separators=(",", ":")).encode()
