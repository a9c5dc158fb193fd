"""`meshfed demo` runs to the end: real registry, agents and gateways as processes.

The assertions are the demo's promises from issue 7: zero failed requests while
east2's gateway is stopped, traffic fails over to west, and returns to east2.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def test_demo_fails_over_with_zero_failed_requests_and_returns(tmp_path: Path) -> None:
    summary_path = tmp_path / "summary.json"
    result = subprocess.run(
        [sys.executable, "-m", "federation.cli", "demo", "--summary-json", str(summary_path),
         "--phase-seconds", "3", "--rate", "20"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    summary = json.loads(summary_path.read_text())
    assert summary["ok"] is True
    assert summary["failed"] == 0, summary
    assert summary["requests"] >= 100  # 20 req/s over at least three phases
    assert summary["served_by"].get("east2", 0) > 0  # the nearest cluster first
    assert summary["served_by"].get("west", 0) > 0  # then the failover target
    assert summary["failover_seconds"] is not None and summary["failover_seconds"] < 3
    assert summary["return_seconds"] is not None
    assert not Path(summary["workdir"]).exists()  # torn down after a clean run
    out = result.stdout
    assert out.index("stopped east2's gateway") < out.index("restored east2's gateway")
    assert "\u221a demo passed" in out


def test_demo_bad_arguments_exit_2_naming_the_value() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "federation.cli", "demo", "--rate", "fast"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert "'fast'" in result.stderr
