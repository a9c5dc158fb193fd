"""`meshfed gateway`'s registry and join token flags, as the agent reads them
(federation.client.cli_args): exit 2 naming the flag, never echoing the secret."""

from __future__ import annotations

from pathlib import Path

import pytest

from eastwest_gateway.main import build_parser, run

SECRET = "s3cret-value_0123456789"
BASE = ["--cluster", "east", "--trust-domain", "east.test", "--registry-ca", "missing.pem"]


@pytest.fixture(autouse=True)
def no_token_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MESHFED_JOIN_TOKEN", raising=False)


@pytest.mark.parametrize("url", ["http://127.0.0.1:9471", "https://127.0.0.1:9471"])
def test_registry_url_is_refused_naming_it(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run([*BASE, "--registry", url, "--join-token", f"abcdef.{SECRET}"]) == 2
    err = capsys.readouterr().err
    assert (
        f"--registry: {url!r} is a URL; give the control plane as HOST:PORT (e.g. 127.0.0.1:9471)"
        in err
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("grpc://127.0.0.1:9471", "127.0.0.1:9471"),
        ("127.0.0.1:9471", "127.0.0.1:9471"),
        ("grpc://registry.example:9471", "registry.example:9471"),
        ("[::1]:9471", "[::1]:9471"),
        ("grpc://[::1]:9471/", "[::1]:9471"),
    ],
)
def test_registry_accepts_host_port_and_grpc_urls(text: str, expected: str) -> None:
    args = build_parser().parse_args([*BASE, "--registry", text])
    assert args.registry == expected


@pytest.mark.parametrize(
    ("token_args", "env", "names"),
    [
        ([], None, "--join-token: required (or --join-token-file, or $MESHFED_JOIN_TOKEN)"),
        (["--join-token", SECRET], None, "--join-token: not a join token"),
        (["--join-token", f"ABC.{SECRET}"], None, "--join-token: not a join token"),
        (["--join-token", f"abcdef.{SECRET} x"], None, "--join-token: not a join token"),
        ([], SECRET, "$MESHFED_JOIN_TOKEN: not a join token"),
        (["--join-token-file", "FILE"], None, "--join-token-file: not a join token"),
        (["--join-token-file", "MISSING"], None, "--join-token-file: cannot read"),
        (["--join-token-file", "EMPTY"], None, "is empty"),
    ],
)
def test_malformed_or_missing_token_exits_2_without_the_secret(
    token_args: list[str],
    env: str | None,
    names: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "FILE").write_text(SECRET + "\n")
    (tmp_path / "EMPTY").write_text("\n")
    token_args = [str(tmp_path / a) if a.isupper() else a for a in token_args]
    if env is not None:
        monkeypatch.setenv("MESHFED_JOIN_TOKEN", env)
    assert run([*BASE, "--registry", "127.0.0.1:9471", *token_args]) == 2
    err = capsys.readouterr().err
    assert names in err
    assert SECRET not in err


def test_token_sources_in_order_file_flag_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A well-formed token from any source gets past the token check (the next
    check, the missing --registry-ca, names that flag); the file wins over the flag."""
    (tmp_path / "t").write_text("abcdef.fromfile\n")
    monkeypatch.setenv("MESHFED_JOIN_TOKEN", "abcdef.fromenv")
    for token_args in (
        [],
        ["--join-token", "abcdef.flag"],
        ["--join-token-file", str(tmp_path / "t")],
    ):
        assert run([*BASE, "--registry", "127.0.0.1:9471", *token_args]) == 2
        err = capsys.readouterr().err
        assert "--registry-ca" in err and "join-token" not in err
    # the file is read even when the flag is given too: a bad file fails
    (tmp_path / "t").write_text("bad\n")
    assert run([*BASE, "--registry", "127.0.0.1:9471", "--join-token", "abcdef.flag",
                "--join-token-file", str(tmp_path / "t")]) == 2  # fmt: skip
    assert "--join-token-file: not a join token" in capsys.readouterr().err


def test_join_token_file_only_with_registry(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--cluster", "east", "--routes", "r.yaml", "--join-token-file", "t"]
    assert run(argv) == 2
    assert "--join-token-file: only with --registry" in capsys.readouterr().err


def test_help_shows_defaults_and_token_sources(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "single-use bootstrap" not in out
    assert "--reusable" in out and "--join-token-file FILE" in out
    assert "$MESHFED_JOIN_TOKEN" in out
    assert "default 0.0.0.0:15443" in out and "default: none, no admin endpoint" in out
