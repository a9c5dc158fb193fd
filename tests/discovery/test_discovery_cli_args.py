"""`meshfed agent`'s registry and join token flags, as the gateway reads them
(federation.client.cli_args): exit 2 naming the flag at parse time, never echoing
the secret; a token the registry refuses exits 1 with the gateway's wording."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from registry_fixture import CLUSTERS, Registry, registry

from discovery_sync.main import run as agent_main

SECRET = "s3cret-value_0123456789"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def no_token_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MESHFED_JOIN_TOKEN", raising=False)


def base(tmp_path: Path, registry_address: str = "127.0.0.1:9471") -> list[str]:
    ca = tmp_path / "ca.pem"
    if not ca.exists():
        ca.write_text("-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n")
    return ["--cluster", "east", "--registry", registry_address, "--trust-domain", "east.test",
            "--registry-ca", str(ca), "--static", str(tmp_path / "missing.yaml")]  # fmt: skip


def exit_code(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as exit_:
        agent_main(argv)
    assert isinstance(exit_.value.code, int)
    return exit_.value.code


@pytest.mark.parametrize("url", ["http://127.0.0.1:9471", "https://127.0.0.1:9471"])
def test_registry_url_is_refused_naming_it(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert exit_code([*base(tmp_path, url), "--join-token", f"abcdef.{SECRET}"]) == 2
    err = capsys.readouterr().err
    assert (
        f"--registry: {url!r} is a URL; give the control plane as HOST:PORT (e.g. 127.0.0.1:9471)"
        in err
    )
    assert "IPv6" not in err


@pytest.mark.parametrize(
    ("token_args", "env", "names"),
    [
        ([], None, "--join-token: required (or --join-token-file, or $MESHFED_JOIN_TOKEN)"),
        (["--join-token", SECRET], None, "--join-token: not a join token"),
        (["--join-token", f"ABC.{SECRET}"], None, "--join-token: not a join token"),
        ([], SECRET, "$MESHFED_JOIN_TOKEN: not a join token"),
        (["--join-token-file", "FILE"], None, "--join-token-file: not a join token"),
        (["--join-token-file", "MISSING"], None, "--join-token-file: cannot read"),
        (["--join-token-file", "EMPTY"], None, "is empty"),
    ],
)
def test_malformed_or_missing_token_exits_2_at_parse_time_without_the_secret(
    token_args: list[str],
    env: str | None,
    names: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Checked before anything starts: the --static file does not even exist."""
    (tmp_path / "FILE").write_text(SECRET + "\n")
    (tmp_path / "EMPTY").write_text("\n")
    token_args = [str(tmp_path / a) if a.isupper() else a for a in token_args]
    if env is not None:
        monkeypatch.setenv("MESHFED_JOIN_TOKEN", env)
    assert exit_code([*base(tmp_path), *token_args]) == 2
    err = capsys.readouterr().err
    assert names in err and "--static" not in err.partition("error:")[2]
    assert SECRET not in err


def test_well_formed_token_passes_on_to_the_next_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MESHFED_JOIN_TOKEN", f"abcdef.{SECRET}")
    assert exit_code(base(tmp_path)) == 2
    message = capsys.readouterr().err.partition("error:")[2]
    assert "--static:" in message and "join-token" not in message


@pytest.fixture
async def reg(tmp_path: Path) -> AsyncIterator[Registry]:
    async with registry(tmp_path) as r:
        yield r


async def test_token_the_registry_refuses_exits_1(reg: Registry, tmp_path: Path) -> None:
    """Well-formed but unknown: refused at join time, exit 1 (as the gateway)."""
    (tmp_path / "roots.pem").write_bytes(await reg.bundle())
    (tmp_path / "east.yaml").write_text("services: []\n")
    argv = ["--cluster", "east", "--registry", f"grpc://{reg.plane.address}",
            "--join", reg.plane.join_address, "--trust-domain", CLUSTERS["east"].trust_domain,
            "--registry-ca", str(tmp_path / "roots.pem"), "--static", str(tmp_path / "east.yaml"),
            "--admin-address", "off"]  # fmt: skip
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "discovery_sync.main",
        *argv,
        cwd=ROOT,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "MESHFED_JOIN_TOKEN": "abcdef0123456789.not-a-real-secret"},
    )
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    text = err.decode()
    assert proc.returncode == 1, text
    assert (
        "meshfed agent: error: $MESHFED_JOIN_TOKEN: the registry refused the join token"
        " (unknown join token)" in text
    )
    assert "not-a-real-secret" not in text and "Traceback" not in text
