"""`meshfed install` as a user runs it (a real subprocess): output that kubectl and
jq take, and bad flags that exit 2 naming the value."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def meshfed(*args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "federation.cli", "install", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    return result


def test_prints_yaml_and_a_json_list(tmp_path: Path) -> None:
    out = meshfed("--component", "all", "--cluster", "east", "--trust-dir", str(tmp_path / "t"))
    assert out.returncode == 0, out.stderr
    docs = [d for d in yaml.safe_load_all(out.stdout) if d]
    kinds = {d["kind"] for d in docs}
    assert {"Namespace", "Deployment", "StatefulSet", "HorizontalPodAutoscaler"} <= kinds
    as_json = meshfed(
        "--component",
        "gateway",
        "--cluster",
        "east",
        "--registry-url",
        "https://registry.example.com:9471",
        "-o",
        "json",
        "--namespace",
        "mesh",
    )
    assert as_json.returncode == 0, as_json.stderr
    doc = json.loads(as_json.stdout)
    assert doc["kind"] == "List" and doc["items"][0]["metadata"]["name"] == "mesh"


BAD = [
    (["--component", "mesh"], "'mesh'"),
    (["--component", "registry", "--store", "mysql"], "'mysql'"),
    (["--component", "registry", "--store", "external:mysql://db/x"], "'mysql'"),
    (["--component", "registry", "--store", "external:sqlite:///r.db"], "SQLite"),
    (["--component", "registry", "--replicas", "0"], "'0'"),
    (["--component", "registry", "--replicas", "two"], "'two'"),
    (
        ["--component", "gateway", "--cluster", "east", "--gateway-service", "ClusterIP"],
        "'ClusterIP'",
    ),
    (["--component", "agent", "--cluster", "East_1"], "'East_1'"),
    (["--component", "agent", "--cluster", "east", "--registry-url", "bad host:1"], "'bad host:1'"),
    (["--component", "agent", "--cluster", "east"], "--registry-url"),
    (["--component", "gateway", "--registry-url", "r:9471"], "--cluster"),
    (["--component", "all", "--cluster", "east", "--replicas", "1"], "--replicas: 1"),
    (["--component", "registry", "--namespace", "Meshfed"], "'Meshfed'"),
    (["--component", "registry", "--apply"], "--context"),
    (["--component", "registry", "-o", "table"], "'table'"),
]


@pytest.mark.parametrize(("args", "named"), BAD, ids=[" ".join(a[2:]) or a[1] for a, _ in BAD])
def test_bad_flags_exit_2_naming_the_value(args: list[str], named: str) -> None:
    result = meshfed(*args)
    assert result.returncode == 2, result.stdout + result.stderr
    assert named in result.stderr, result.stderr
    assert result.stdout == ""
