"""Render command results as `-o table|json|yaml`, the way kubectl users expect."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

FORMATS = ("table", "json", "yaml")


def render(data: Any, fmt: str, columns: Sequence[str] | None = None) -> str:
    """`data` is a mapping or a list of mappings; tables show `columns` (or every key)."""
    if fmt == "json":
        return json.dumps(data, indent=2, sort_keys=False, default=str)
    if fmt == "yaml":
        return yaml.safe_dump(data, sort_keys=False).rstrip("\n")
    rows = data if isinstance(data, list) else [data]
    return table(rows, columns)


def table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> str:
    if not rows:
        return "No resources found."
    cols = list(columns or rows[0].keys())
    cells = [[_cell(row.get(c)) for c in cols] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(cols)]
    lines = ["   ".join(c.upper().ljust(w) for c, w in zip(cols, widths, strict=True)).rstrip()]
    for r in cells:
        lines.append("   ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return "<none>"
    if isinstance(value, Mapping):
        return ",".join(f"{k}={v}" for k, v in value.items()) or "<none>"
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value) or "<none>"
    return str(value)
