"""Check lines (pass / fail / warning marks, as `linkerd check` prints them) and progress.

Results go to stdout, one line each, so they can be piped and grepped. Progress
(a spinner naming the step under way) goes to stderr and only when stderr is a
terminal, through rich when it is installed; otherwise nothing is drawn.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass
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
