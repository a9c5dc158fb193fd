"""The `meshfed` command as a user runs it: a real subprocess, real exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml


def meshfed(*args: str, env_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "federation.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={"MESHFED_DATA_DIR": str(env_dir), "PATH": "/usr/bin:/bin"},
    )


def test_store_check_passes_on_the_embedded_default(tmp_path: Path) -> None:
    result = meshfed("store", "check", env_dir=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"checking store sqlite:///{tmp_path}/registry.db"
    assert sum(line.startswith("\u221a ") for line in lines) == 4
    assert lines[-1] == "Status check results are \u221a"
    assert (tmp_path / "registry.db").exists()


def test_store_check_fails_with_exit_1_when_the_store_is_unusable(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where a directory should be")
    result = meshfed("store", "check", "--store", f"sqlite:///{blocker}/x/r.db", env_dir=tmp_path)
    assert result.returncode == 1
    assert "\u00d7 store reachable" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_store_status_renders_json_yaml_and_table(tmp_path: Path) -> None:
    as_json = json.loads(meshfed("store", "status", "-o", "json", env_dir=tmp_path).stdout)
    assert as_json["clusters"] == 0 and as_json["revision"] >= 1
    as_yaml = yaml.safe_load(meshfed("store", "status", "-o", "yaml", env_dir=tmp_path).stdout)
    assert as_yaml["store"] == as_json["store"]
    table = meshfed("store", "status", env_dir=tmp_path).stdout.splitlines()
    assert table[0].split()[:3] == ["STORE", "REVISION", "CLUSTERS"]


def test_bad_usage_exits_2_naming_the_value(tmp_path: Path) -> None:
    for args, named in [
        (("store", "check", "--store", "mysql://db/x"), "'mysql'"),
        (("store", "status", "-o", "xml"), "'xml'"),
        (("gateway", "--cluster", "Not_A_Label", "--routes", "r.yaml"), "'Not_A_Label'"),
        (("frobnicate",), "'frobnicate'"),
    ]:
        result = meshfed(*args, env_dir=tmp_path)
        assert result.returncode == 2, args
        assert named in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr
