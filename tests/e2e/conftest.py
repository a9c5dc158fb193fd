"""Fixtures for the multi-cluster drills (issue 9): namespaces, federation, figures.

Every drill module builds its own federation once (module scope) and tears it all
down afterwards, also when a drill fails: processes first (SIGTERM, then SIGKILL),
then the namespaces (which takes their veths with them). Logs of a failed module are
kept under the work dir it prints.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import Federation
from tests.e2e.netns import Net, can_run

# drill name -> figures, printed at the end of the run (pytest_terminal_summary)
FIGURES: dict[str, dict[str, Any]] = {}


def record(drill: str, **figures: Any) -> None:
    FIGURES[drill] = figures
    print(f"\n[{drill}] " + json.dumps(figures, sort_keys=True))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not FIGURES:
        return
    terminalreporter.section("meshfed e2e drills: figures")
    for drill, figures in FIGURES.items():
        terminalreporter.write_line(f"{drill}: {json.dumps(figures, sort_keys=True)}")


@pytest.fixture(scope="module")
def net() -> Iterator[Net]:
    reason = can_run()
    if reason:
        pytest.skip(f"e2e drills skipped: {reason}")
    n = Net()
    try:
        n.up()
        yield n
    finally:
        n.down()


def _federation(
    net: Net, request: pytest.FixtureRequest, store_url: str | None
) -> Iterator[Federation]:
    workdir = Path(tempfile.mkdtemp(prefix="meshfed-e2e-"))
    fed = Federation(net, workdir, store_url)
    failed_before, clean = request.session.testsfailed, False
    try:
        fed.start()
        yield fed
        clean = request.session.testsfailed == failed_before
    finally:
        fed.close()
        if clean:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"\ne2e logs kept in {workdir / 'logs'}")


@pytest.fixture(scope="module")
def fed(net: Net, request: pytest.FixtureRequest) -> Iterator[Federation]:
    """The federation on the registry's default store (SQLite in its data dir)."""
    yield from _federation(net, request, None)
