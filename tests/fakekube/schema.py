"""Structural validation against a CRD's openAPIV3Schema (the subset CRDs use).

Checks type, required, properties, additionalProperties, items, enum, pattern,
minLength/maxLength, maxItems, minimum and int32/int64 formats, and reports each
failure with its JSON path the way the API server's 422 `Invalid` does
(`spec.type: Unsupported value: "X"`). Unknown fields are pruned, as structural
CRD schemas do unless `x-kubernetes-preserve-unknown-fields` is set.
"""

from __future__ import annotations

import re
from typing import Any

_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
}
_INT_RANGE = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}


def validate(value: Any, schema: dict[str, Any], path: str = "") -> list[str]:
    """Errors (empty when valid); prunes unknown fields in place."""
    errors: list[str] = []
    where = path or "<root>"
    kind = schema.get("type")
    if value is None:
        if schema.get("nullable"):
            return errors
        if kind:
            return [f'{where}: Invalid value: "null": {where} in body must be of type {kind}']
    if kind:
        ok = isinstance(value, _TYPES[kind]) and not (
            kind in ("integer", "number") and isinstance(value, bool)
        )
        if not ok:
            return [
                f"{where}: Invalid value: {type(value).__name__}: "
                f"{where} in body must be of type {kind}"
            ]
    if "enum" in schema and value not in schema["enum"]:
        allowed = ", ".join(f'"{v}"' for v in schema["enum"])
        errors.append(f"{where}: Unsupported value: {value!r}: supported values: {allowed}")
    if isinstance(value, str):
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            errors.append(f"{where}: Too long: may not be more than {schema['maxLength']} bytes")
        if "minLength" in schema and len(value) < schema["minLength"]:
            errors.append(
                f"{where}: Invalid value: {value!r}: should be at least "
                f"{schema['minLength']} chars long"
            )
        if "pattern" in schema and not re.search(schema["pattern"], value):
            errors.append(f"{where}: Invalid value: {value!r}: should match '{schema['pattern']}'")
    if isinstance(value, int) and not isinstance(value, bool):
        lo_hi = _INT_RANGE.get(schema.get("format", ""))
        if lo_hi and not lo_hi[0] <= value <= lo_hi[1]:
            errors.append(f"{where}: Invalid value: {value}: out of {schema['format']} range")
        if "minimum" in schema and value < schema["minimum"]:
            errors.append(
                f"{where}: Invalid value: {value}: should be greater than or equal "
                f"to {schema['minimum']}"
            )
    if isinstance(value, list):
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            errors.append(
                f"{where}: Too many: {len(value)}: must have at most {schema['maxItems']} items"
            )
        items = schema.get("items")
        if items:
            for i, item in enumerate(value):
                errors += validate(item, items, f"{path}[{i}]")
        keys = schema.get("x-kubernetes-list-map-keys")
        if keys and schema.get("x-kubernetes-list-type") == "map":
            seen = set()
            for i, item in enumerate(value):
                ident = tuple(item.get(k) for k in keys) if isinstance(item, dict) else None
                if ident in seen:
                    errors.append(f"{path}[{i}]: Duplicate value: {ident!r}")
                seen.add(ident)
    if isinstance(value, dict):
        for req in schema.get("required", ()):
            if req not in value:
                errors.append(f"{_join(path, req)}: Required value")
        props = schema.get("properties")
        extra = schema.get("additionalProperties")
        for key in list(value):
            if props and key in props:
                errors += validate(value[key], props[key], _join(path, key))
            elif isinstance(extra, dict):
                errors += validate(value[key], extra, _join(path, key))
            elif props is not None and not schema.get("x-kubernetes-preserve-unknown-fields"):
                if path == "" and key in ("apiVersion", "kind", "metadata"):
                    continue
                del value[key]  # structural schemas prune unknown fields
    return errors


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key
