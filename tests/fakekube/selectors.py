"""Label and field selectors as the Kubernetes API server parses them.

Label selectors: `a=b`, `a==b`, `a!=b`, `a in (x,y)`, `a notin (x)`, `a`, `!a`,
comma-separated, all must hold (apimachinery `labels.Parse`). Field selectors:
`metadata.name` and `metadata.namespace` with `=`, `==`, `!=` (the fields every
resource supports).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

Predicate = Callable[[Mapping[str, Any]], bool]

_SET = re.compile(r"^\s*(!?)\s*([A-Za-z0-9./_-]+)\s*(?:(notin|in)\s*\(([^)]*)\))?\s*$")
_EQ = re.compile(r"^\s*([A-Za-z0-9./_-]+)\s*(==|=|!=)\s*([A-Za-z0-9._-]*)\s*$")


class SelectorError(ValueError):
    pass


def _split(text: str) -> list[str]:
    parts, depth, cur = [], 0, ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    if cur.strip():
        parts.append(cur)
    return parts


def label_selector(text: str | None) -> Predicate:
    if not text:
        return lambda obj: True
    checks: list[Callable[[Mapping[str, str]], bool]] = []
    for part in _split(text):
        eq = _EQ.match(part)
        if eq:
            key, op, value = eq.groups()
            if op == "!=":
                checks.append(lambda lb, k=key, v=value: lb.get(k) != v)
            else:
                checks.append(lambda lb, k=key, v=value: lb.get(k) == v)
            continue
        st = _SET.match(part)
        if not st:
            raise SelectorError(f"unable to parse requirement: {part!r}")
        neg, key, op, values = st.groups()
        if op:
            if neg:
                raise SelectorError(f"unable to parse requirement: {part!r}")
            vals = {v.strip() for v in values.split(",") if v.strip()}
            if op == "in":
                checks.append(lambda lb, k=key, vs=vals: lb.get(k) in vs)
            else:
                checks.append(lambda lb, k=key, vs=vals: lb.get(k) not in vs)
        elif neg:
            checks.append(lambda lb, k=key: k not in lb)
        else:
            checks.append(lambda lb, k=key: k in lb)

    def match(obj: Mapping[str, Any]) -> bool:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        return all(c(labels) for c in checks)

    return match


_FIELDS = {"metadata.name": "name", "metadata.namespace": "namespace"}


def field_selector(text: str | None) -> Predicate:
    if not text:
        return lambda obj: True
    checks: list[Callable[[Mapping[str, Any]], bool]] = []
    for part in _split(text):
        eq = _EQ.match(part)
        if not eq or eq.group(1) not in _FIELDS:
            raise SelectorError(f"field label not supported: {part.strip()!r}")
        key, op, value = eq.groups()
        attr = _FIELDS[key]
        if op == "!=":
            checks.append(lambda o, a=attr, v=value: (o.get("metadata") or {}).get(a, "") != v)
        else:
            checks.append(lambda o, a=attr, v=value: (o.get("metadata") or {}).get(a, "") == v)
    return lambda obj: all(c(obj) for c in checks)
