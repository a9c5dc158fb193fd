"""Check lines (pass / fail / warning marks, as `linkerd check` prints them) and progress.

Results go to stdout, one line each, so they can be piped and grepped. Progress
(a spinner naming the step under way) goes to stderr and only when stderr is a
terminal, through rich when it is installed; otherwise nothing is drawn.
"""

from __future__ import annotations

import contextlib
import re
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Literal

PASS, FAIL, WARN = "\u221a", "\u00d7", "\u203c"  # linkerd check marks

Status = Literal["pass", "fail", "warn"]
MARKS: dict[str, str] = {"pass": PASS, "fail": FAIL, "warn": WARN}


@dataclass(frozen=True)
class Line:
    section: str
    name: str
    status: Status
    detail: str = ""

    def text(self) -> str:
        detail = f" ({self.detail})" if self.detail else ""
        return f"{MARKS[self.status]} {self.name}{detail}"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Report:
    """Collects lines; prints them as they come in table mode."""

    def __init__(self, live: bool) -> None:
        self.lines: list[Line] = []
        self.live = live
        self._section: str | None = None

    def add(self, section: str, name: str, status: Status, detail: str = "") -> Line:
        line = Line(section, name, status, detail)
        self.lines.append(line)
        if self.live:
            if section != self._section:
                if self._section is not None:
                    print()
                print(section)
                print("-" * len(section))
                self._section = section
            print(line.text(), flush=True)
        return line

    @property
    def ok(self) -> bool:
        return all(line.status != "fail" for line in self.lines)

    def summary(self) -> str:
        return "Status check results are " + (PASS if self.ok else FAIL)

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "checks": [line.as_dict() for line in self.lines]}


@contextlib.contextmanager
def progress(message: str) -> Iterator[Any]:
    """A spinner on stderr while the block runs; `.update(status=...)` changes the text."""
    if not sys.stderr.isatty():
        yield _Quiet()
        return
    try:
        from rich.console import Console
    except ImportError:  # rich is optional: plain lines are enough
        yield _Quiet()
        return
    with Console(stderr=True).status(message) as status:
        yield status


class _Quiet:
    def update(self, *args: Any, **kwargs: Any) -> None:
        pass


# -- times and durations in human output ----------------------------------------------

_TIMESTAMP = re.compile(
    r"\b\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2})?(?![\d:])"
)
# str(timedelta): "0:00:41", "0:00:00.399024", "1 day, 2:03:04"
_TIMEDELTA = re.compile(r"(?<![\w:.])(?:(\d+) days?, )?(\d+):(\d{2}):(\d{2})(?:\.\d+)?(?![\w:])")


def rfc3339(text: str) -> str:
    """A timestamp as RFC 3339 in UTC with seconds precision (`2026-01-01T10:42:23Z`);
    text that is not one is returned unchanged."""
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return text
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def human_duration(seconds: float) -> str:
    """`41s`, `15m`, `1h30m`, `2d3h`: whole seconds, zero parts left out."""
    left = max(0, int(seconds))
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if left >= size:
            parts.append(f"{left // size}{unit}")
            left %= size
    return "".join(parts) or "0s"


def human_times(text: str) -> str:
    """`text` with its timestamps in RFC 3339 (seconds, Z) and Python's timedelta
    renderings (`0:00:00.399024`) as human durations (`0s`)."""

    def duration(m: re.Match[str]) -> str:
        days, hours, minutes, secs = (int(g or 0) for g in m.groups())
        return human_duration(((days * 24 + hours) * 60 + minutes) * 60 + secs)

    text = _TIMESTAMP.sub(lambda m: rfc3339(m.group(0)), text)
    return _TIMEDELTA.sub(duration, text)
