"""Per-run figures of the drills, their p50/p99, the table and the docs section (pure).

Percentiles are nearest-rank: the value at rank ceil(q * n) of the n sorted runs, so
with 5 runs p50 is the 3rd value and p99 the 5th (the worst run); every run's value is
listed next to them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

BEGIN, END = "<!-- drills:begin -->", "<!-- drills:end -->"


@dataclass(frozen=True, slots=True)
class Drill:
    key: str
    title: str
    fault: str
    target_s: float | None  # time-to-shift target (issue 9); None: no time target
    first_label: str  # what "first" measures for this drill
    all_label: str  # what "all" measures ("" when it does not apply)


DRILLS = {
    "3": Drill("3", "drill 3", "SIGKILL of b's gateway", 1.0,
               "first reply from c", "every request at c"),
    "4": Drill("4", "drill 4", "a<->b link down (blackhole)", 3.0,
               "first reply from c", "every request at c"),
    "7": Drill("7", "drill 7", "etcd leader SIGKILL (3 members)", None,
               "first registry write", ""),
}  # fmt: skip


@dataclass(slots=True)
class RunFigures:
    drill: str
    run: int
    requests: int
    lost: int
    lost_in_flight: int  # of `lost`: requests already in flight when the fault struck
    first_s: float | None  # fault -> first served by the fallback
    all_s: float | None  # fault -> send time after which every request is at the fallback
    slowest_s: float  # the slowest request sent after the fault
    served_by: dict[str, int] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Baseline:
    store: str
    requests: int
    lost: int
    p50_ms: float
    p99_ms: float
    served_by: dict[str, int]


def nearest_rank(values: list[float], q: float) -> float:
    """The nearest-rank percentile: sorted(values)[ceil(q * n) - 1]."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _p(values: list[float | None]) -> str:
    """`p50 / p99` over the runs; a run without a value (never shifted) is worst."""
    if not values:
        return "-"
    if any(v is None for v in values):
        missing = sum(v is None for v in values)
        known = [v for v in values if v is not None]
        p50 = _s(nearest_rank(known, 0.5)) if known else "-"
        return f"{p50} / never ({missing} of {len(values)} runs)"
    clean = [v for v in values if v is not None]
    return f"{nearest_rank(clean, 0.5):.2f} / {nearest_rank(clean, 0.99):.2f}"


def verdict(drill: Drill, runs: list[RunFigures]) -> str:
    lost = sum(r.lost for r in runs)
    misses = []
    if drill.target_s is not None:
        for label, values in (("first", [r.first_s for r in runs]),
                              ("all", [r.all_s for r in runs])):  # fmt: skip
            if any(v is None for v in values):
                misses.append(f"{label}: not in every run")
            elif nearest_rank([v for v in values if v is not None], 0.99) >= drill.target_s:
                misses.append(f"{label} p99 over {drill.target_s:g} s")
    if lost:
        misses.append(f"{lost} lost")
    return "met" if not misses else "missed (" + "; ".join(misses) + ")"


def table(runs: list[RunFigures], baselines: list[Baseline]) -> str:
    head = (
        "| drill | fault | runs | target | first served by the fallback, s: p50 / p99 |"
        " every request at the fallback, s: p50 / p99 | requests lost (in flight at the"
        " fault) / sent | slowest request, s (worst run) | |\n"
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n"
    )
    rows = []
    for key, drill in DRILLS.items():
        mine = [r for r in runs if r.drill == key]
        if not mine:
            continue
        target = f"< {drill.target_s:g} s, 0 lost" if drill.target_s is not None else "0 lost"
        first = f"{drill.first_label}: {_p([r.first_s for r in mine])}"
        every = f"{drill.all_label}: {_p([r.all_s for r in mine])}" if drill.all_label else "-"
        lost = sum(r.lost for r in mine)
        in_flight = sum(r.lost_in_flight for r in mine)
        sent = sum(r.requests for r in mine)
        slowest = max(r.slowest_s for r in mine)
        rows.append(
            f"| {drill.key} | {drill.fault} | {len(mine)} | {target} | {first} | {every} |"
            f" {lost} ({in_flight}) / {sent} | {slowest:.2f} | {verdict(drill, mine)} |"
        )
    for b in baselines:
        rows.append(
            f"| none (baseline, {b.store}) | no fault, same load | 1 | 0 lost | - | - |"
            f" {b.lost} / {b.requests} | p50 {b.p50_ms / 1000:.3f}, p99 {b.p99_ms / 1000:.3f}"
            f" | served by {_served(b.served_by)} |"
        )
    return head + "\n".join(rows) + "\n"


def _served(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))


def per_run_lines(runs: list[RunFigures]) -> str:
    """Every run's values, drill by drill (small N: the percentiles hide nothing)."""
    out = []
    for key, drill in DRILLS.items():
        mine = sorted((r for r in runs if r.drill == key), key=lambda r: r.run)
        if not mine:
            continue
        firsts = ", ".join(_s(r.first_s) for r in mine)
        line = f"* drill {key}, {drill.first_label} (s, by run): {firsts}"
        if drill.all_label:
            line += f"; {drill.all_label}: " + ", ".join(_s(r.all_s) for r in mine)
        line += "; lost: " + ", ".join(str(r.lost) for r in mine)
        extras = sorted({k for r in mine for k in r.extra})
        for k in extras:
            line += f"; {k}: " + ", ".join(str(r.extra.get(k, "-")) for r in mine)
        out.append(line)
    return "\n".join(out) + "\n"


def replace_section(doc: str, section: str) -> str:
    """`doc` with the text between the drill markers replaced (appended if absent)."""
    body = f"{BEGIN}\n{section.rstrip()}\n{END}"
    start, end = doc.find(BEGIN), doc.find(END)
    if start == -1 or end == -1 or end < start:
        return doc.rstrip() + "\n\n## Drills (issue 9)\n\n" + body + "\n"
    return doc[:start] + body + doc[end + len(END) :]
