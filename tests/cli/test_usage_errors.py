"""Every argument refuses garbage with one line naming it (exit 2), before any request;
runtime failures are one line (exit 1); never a traceback, nothing half-done. Through
the real entry point against a real `meshfed serve` (its own, for this module)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli.conftest import ROOT, Registry


def add(reg: Registry, name: str, *extra: str) -> str:
    return reg.ok("cluster", "add", name, "--region", "us-east", "--zone", "zone-a", *extra)


def token_ids(reg: Registry, cluster: str) -> set[str]:
    listed = json.loads(reg.ok("cluster", "join-tokens", cluster, "-o", "json"))
    return {t["id"] for t in listed["items"]}


def clusters(reg: Registry) -> set[str]:
    return {c["name"] for c in json.loads(reg.ok("cluster", "list", "-o", "json"))["items"]}


@pytest.mark.parametrize(
    "args",
    [
        ("trust", "rotation"),
        ("status",),
        ("check",),
        ("cluster", "join-tokens", "ue-pipe"),
        ("cluster", "list"),
    ],
)
def test_a_closed_pipe_exits_141_without_a_traceback(
    registry: Registry, args: tuple[str, ...]
) -> None:
    if "ue-pipe" not in clusters(registry):
        add(registry, "ue-pipe")
    # `meshfed ... | head -1` where head has already gone: every write is EPIPE.
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        result = subprocess.run(
            [sys.executable, "-m", "federation.cli", *args],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            cwd=ROOT,
            env=registry.env(),
        )
    finally:
        os.close(write_end)
    assert result.returncode == 141, (args, result.stderr)
    assert "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr, result.stderr


def test_a_pipe_closed_after_the_first_line(registry: Registry) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "federation.cli", "trust", "rotation"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        env=registry.env(),
    )
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline().startswith(b"root rotation: ")
    proc.stdout.close()
    stderr = proc.stderr.read().decode()
    rc = proc.wait(60)
    assert "Traceback" not in stderr, stderr
    assert rc in (0, 141), (rc, stderr)  # 0 when everything was written before the close


def test_token_files_are_checked_before_anything_is_minted(
    registry: Registry, tmp_path: Path
) -> None:
    add(registry, "ue-file")
    before = token_ids(registry, "ue-file")
    for target in (str(tmp_path), str(tmp_path / "missing" / "t.token"), "/proc/self"):
        result = registry.run("cluster", "join-token", "ue-file", "--file", target)
        assert result.returncode == 2, (target, result.stderr)
        assert target in result.stderr and result.stdout == ""
        assert len(result.stderr.strip().splitlines()[-1:]) == 1
    assert not (tmp_path / "missing").exists()  # never created
    assert token_ids(registry, "ue-file") == before  # nothing minted

    added = registry.run(
        "cluster", "add", "ue-north", "--region", "r", "--zone", "z",
        "--join-token-file", str(tmp_path),
    )  # fmt: skip
    assert added.returncode == 2 and f"--join-token-file: {tmp_path} is a directory" in (
        added.stderr
    )
    assert "ue-north" not in clusters(registry)  # nothing registered


def test_a_token_file_write_that_fails_is_one_line_and_revokes_the_token(
    registry: Registry, tmp_path: Path
) -> None:
    # a FIFO passes nothing at parse time... a regular file on a read-only path does:
    # /proc/version is a regular file root may "write" to, and the write fails.
    if os.geteuid() != 0:
        pytest.skip("needs a path only root passes the parse-time check for")
    add(registry, "ue-write")
    before = token_ids(registry, "ue-write")
    result = registry.run("cluster", "join-token", "ue-write", "--file", "/proc/version")
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith("error: cannot write /proc/version: ")
    assert "was minted and revoked" in result.stderr and len(result.stderr.splitlines()) == 1
    assert token_ids(registry, "ue-write") == before

    added = registry.run(
        "cluster", "add", "ue-south", "--region", "r", "--zone", "z",
        "--join-token-file", "/proc/version",
    )  # fmt: skip
    assert added.returncode == 1, added.stderr
    assert added.stderr.startswith('error: cluster "ue-south" registered, but cannot write ')
    assert "meshfed cluster join-token ue-south --file FILE" in added.stderr
    assert len(added.stderr.splitlines()) == 1
    assert token_ids(registry, "ue-south") == set()


def test_bad_values_exit_2_naming_them(registry: Registry, tmp_path: Path) -> None:
    add(registry, "ue-bad")
    before = token_ids(registry, "ue-bad")
    for args, named in [
        (("cluster", "join-token", "ue-bad", "--ttl", "5"), "'5' has no unit"),
        (("cluster", "join-token", "ue-bad", "--ttl=-5m"), "'-5m'"),
        (("cluster", "add", "ue-x", "--region", "r", "--zone", "z", "--join-token-ttl", "90"),
         "'90' has no unit"),
        (("link", "ue-bad", "ue-x", "--credential-ttl", "60"), "'60' has no unit"),
        (("trust", "export", "--cluster", "ue-bad", "--format", "pem", "--out", "/etc/passwd"),
         "--out: /etc/passwd is not a directory"),
        (("trust", "rotate", "--timeout", "5m"), "--timeout needs --wait"),
    ]:  # fmt: skip
        result = registry.run(*args)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert named in result.stderr, (args, result.stderr)
        assert result.stdout == "", (args, result.stdout)
    assert token_ids(registry, "ue-bad") == before
    assert "ue-x" not in clusters(registry)
    # `rotate --timeout` without --wait ran no step
    status = json.loads(registry.ok("trust", "rotation", "-o", "json"))
    assert status["stage"] == "stable"


def test_revoke_token_hides_secrets_and_names_unknown_clusters(registry: Registry) -> None:
    secret = "s3cr3tpart0123456789"
    bad = registry.run("cluster", "revoke-token", "ue-bad", f"NOT-AN-ID.{secret}")
    assert bad.returncode == 2 and "'NOT-AN-ID' (before the dot)" in bad.stderr
    assert secret not in bad.stderr
    unknown = registry.run("cluster", "revoke-token", "nosuch", f"abcdef12.{secret}")
    assert unknown.returncode == 1
    assert unknown.stderr == 'error: 404 Not Found: cluster "nosuch" not found\n'


def test_registry_urls_as_serve_prints_them(registry: Registry) -> None:
    for url in (f"{registry.url}/api/v1", f"{registry.url}/api/v1/", f"{registry.url}/"):
        assert registry.run("cluster", "list", "--registry", url).returncode == 0, url
        env = registry.env(MESHFED_REGISTRY=url)
        result = registry.run("cluster", "list", env=env)
        assert result.returncode == 0, (url, result.stderr)
    garbage = registry.run("cluster", "list", env=registry.env(MESHFED_REGISTRY="garbage"))
    assert garbage.returncode == 2
    assert garbage.stderr == (
        "error: MESHFED_REGISTRY: 'garbage' is not an http:// or https:// URL of the registry API\n"
    )


def test_rotation_times_are_rfc3339_and_durations_human(registry: Registry) -> None:
    # a member cluster with no reporting gateway keeps propagation waiting (on its own
    # the registry would have no cluster to wait for, and activate would run)
    if registry.run("cluster", "show", "rot-times").returncode != 0:
        registry.ok("cluster", "add", "rot-times", "--region", "r", "--zone", "z")
    registry.ok("trust", "rotate", "--stage", "prepare")
    shown = registry.ok("trust", "rotation")
    first = shown.splitlines()[0]
    assert re.fullmatch(
        r"root rotation: propagating since \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \(.*\)", first
    ), first
    refused = registry.run("trust", "rotate", "--stage", "activate")
    assert refused.returncode == 1 and refused.stderr.startswith("error: activate refused: ")
    assert re.search(r"\(\d+s of 15m elapsed\)", refused.stderr), refused.stderr
    assert not re.search(r"(?<![\dT])\d+:\d\d:\d\d", shown + refused.stderr)
    registry.ok("trust", "rotate", "--stage", "abort")


def test_serve_data_dir_must_be_a_directory(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "MESHFED_DATA_DIR": str(tmp_path / "unused")}
    for data_dir, named in [
        ("/etc/passwd", "--data-dir: /etc/passwd is not a directory"),
        ("/etc/passwd/sub", "--data-dir: /etc/passwd/sub: /etc/passwd is not a directory"),
    ]:
        result = subprocess.run(
            [sys.executable, "-m", "federation.cli", "serve", "--data-dir", data_dir],
            capture_output=True, text=True, timeout=60, cwd=ROOT, env=env,
        )  # fmt: skip
        assert result.returncode == 2, result.stderr
        assert named in result.stderr and "Traceback" not in result.stderr
    env["MESHFED_DATA_DIR"] = "/etc/passwd"
    result = subprocess.run(
        [sys.executable, "-m", "federation.cli", "serve"],
        capture_output=True, text=True, timeout=60, cwd=ROOT, env=env,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr == "meshfed serve: error: data dir /etc/passwd is not a directory\n"


def test_a_path_stat_refuses_is_a_usage_error_not_a_traceback(
    registry: Registry, tmp_path: Path
) -> None:
    """A file name longer than NAME_MAX makes stat(2) itself fail (ENAMETOOLONG):
    argparse only turns ArgumentTypeError into exit 2, so the path types translate it."""
    add(registry, "ue-long")
    before = token_ids(registry, "ue-long")
    long_name = str(tmp_path / ("x" * 300))
    for args in (
        ("cluster", "join-token", "ue-long", "--file", long_name),
        ("trust", "export", "--cluster", "ue-long", "--format", "pem", "--out", long_name),
    ):
        result = registry.run(*args)
        assert result.returncode == 2, result.stderr
        assert "File name too long" in result.stderr and "Traceback" not in result.stderr
    assert token_ids(registry, "ue-long") == before
