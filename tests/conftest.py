"""Suite-wide rules: in CI (MESHFED_NO_SKIPS=1) a skipped test fails the run.

The project's bar is that CI runs every test; a test that silently skips because a
tool is missing would hide a regression, so CI turns any skip into a failure.
"""

from __future__ import annotations

import os

import pytest

_skipped: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped:
        _skipped.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _skipped and os.environ.get("MESHFED_NO_SKIPS") == "1":
        print(f"\nMESHFED_NO_SKIPS: {len(_skipped)} test(s) skipped: {', '.join(_skipped[:10])}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
