"""`meshfed cluster join-token / join-tokens / revoke-token` and `cluster add --reusable`,
through the real entry point against a real `meshfed serve` (its own, for this module)."""

from __future__ import annotations

import json
import stat
from datetime import UTC, datetime, timedelta

import yaml

from federation.errors import InvalidToken
from federation.registry.trust import TrustService
from federation.store import Store
from tests.cli.conftest import Registry
from trust_bundle import PassphraseProtector


def add(reg: Registry, name: str, *extra: str) -> str:
    return reg.ok("cluster", "add", name, "--region", "us-east", "--zone", "zone-a", *extra)


def add_bare(reg: Registry, name: str) -> None:
    """A cluster whose only join token (the one `cluster add` mints) is revoked."""
    added = json.loads(add(reg, name, "-o", "json"))
    reg.ok("cluster", "revoke-token", name, added["join_token"]["id"])


def redeem(reg: Registry, token: str) -> str:
    """What an agent's or gateway's Join does with the token, on the registry's store."""
    protector = PassphraseProtector.from_file(reg.data_dir / "key.passphrase")

    async def run(store: Store) -> str:
        return await TrustService(store, protector).redeem_join_token(token, datetime.now(UTC))

    result = reg.store(run)
    assert isinstance(result, str)
    return result


def tokens(reg: Registry, cluster: str) -> dict[str, dict[str, object]]:
    listed = json.loads(reg.ok("cluster", "join-tokens", cluster, "-o", "json"))
    assert listed["cluster"] == cluster
    return {t["id"]: t for t in listed["items"]}


def test_join_token_prints_a_reusable_token_that_joins_many_times(registry: Registry) -> None:
    add_bare(registry, "jt-east")
    result = registry.run("cluster", "join-token", "jt-east", "--reusable", "--ttl", "30d")
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip()
    assert result.stdout == token + "\n" and token.count(".") == 1  # alone on stdout
    token_id = token.split(".")[0]
    assert f'join token {token_id} of cluster "jt-east" (reusable, expires' in result.stderr
    for _ in range(3):
        assert redeem(registry, token) == "jt-east"

    listed = tokens(registry, "jt-east")
    assert set(listed) == {token_id}
    shown = listed[token_id]
    assert (shown["reusable"], shown["uses"], shown["used"], shown["state"]) == (
        True,
        3,
        False,
        "valid",
    )
    expires = datetime.fromisoformat(str(shown["expires"]))
    assert timedelta(days=29) < expires - datetime.now(UTC) <= timedelta(days=30)
    table = registry.ok("cluster", "join-tokens", "jt-east").splitlines()
    assert table[0].split() == ["ID", "REUSABLE", "USES", "STATE", "EXPIRES"]
    assert table[1].split()[:4] == [token_id, "True", "3", "valid"]
    as_yaml = yaml.safe_load(registry.ok("cluster", "join-tokens", "jt-east", "-o", "yaml"))
    assert [t["id"] for t in as_yaml["items"]] == [token_id]
    for listing in (table, [json.dumps(listed)], [yaml.safe_dump(as_yaml)]):
        assert token.split(".")[1] not in "\n".join(listing)


def test_single_use_tokens_to_a_file_and_their_state(registry: Registry) -> None:
    add(registry, "jt-file")
    path = registry.home / "tokens" / "jt-file.token"
    path.parent.mkdir()  # the CLI refuses to create missing directories
    out = registry.ok("cluster", "join-token", "jt-file", "--file", str(path), "--ttl", "10m")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    token = path.read_text().strip()
    assert token.split(".")[1] not in out
    assert "(single use, expires" in out and f"written to {path}" in out
    assert redeem(registry, token) == "jt-file"
    try:
        redeem(registry, token)
    except InvalidToken as err:
        assert "already used" in str(err)
    else:
        raise AssertionError("a single-use token joined twice")
    assert tokens(registry, "jt-file")[token.split(".")[0]]["state"] == "used"
    shown = json.loads(
        registry.ok("cluster", "join-token", "jt-file", "--file", str(path), "-o", "json")
    )
    assert shown["token"] is None and shown["token_file"] == str(path)
    assert shown["reusable"] is False and shown["id"] == path.read_text().split(".")[0]


def test_revoke_token_refuses_the_token_and_unknown_ids_exit_1(registry: Registry) -> None:
    add_bare(registry, "jt-rev")
    token = registry.ok("cluster", "join-token", "jt-rev", "--reusable").strip()
    token_id = token.split(".")[0]
    out = registry.ok("cluster", "revoke-token", "jt-rev", token_id)
    assert out == f'join token {token_id} of cluster "jt-rev" revoked\n'
    try:
        redeem(registry, token)
    except InvalidToken as err:
        assert "unknown join token" in str(err)
    else:
        raise AssertionError("a revoked token joined")
    assert tokens(registry, "jt-rev") == {}
    assert registry.ok("cluster", "join-tokens", "jt-rev").strip() == "No resources found."
    again = registry.run("cluster", "revoke-token", "jt-rev", token_id)
    assert again.returncode == 1
    assert again.stderr == f'error: 404 Not Found: jointoken "{token_id}" not found\n'
    whole = registry.run("cluster", "revoke-token", "jt-rev", token)  # the whole token pasted
    assert whole.returncode == 1 and whole.stderr == again.stderr  # its id used, no secret shown
    ghost = registry.run("cluster", "join-tokens", "jt-ghost")
    assert ghost.returncode == 1
    assert ghost.stderr == 'error: 404 Not Found: cluster "jt-ghost" not found\n'


def test_cluster_add_reusable_mints_a_long_lived_reusable_token(registry: Registry) -> None:
    path = registry.home / "jt-add.token"
    out = add(
        registry, "jt-add", "--reusable", "--join-token-ttl", "90d", "--join-token-file", str(path)
    )
    assert f"join token written to {path} (reusable, expires" in out
    token = path.read_text().strip()
    assert redeem(registry, token) == redeem(registry, token) == "jt-add"
    shown = tokens(registry, "jt-add")[token.split(".")[0]]
    assert (shown["reusable"], shown["uses"]) == (True, 2)
    plain = json.loads(add(registry, "jt-add2", "-o", "json"))
    assert plain["join_token"]["reusable"] is False


def test_bad_token_arguments_exit_2_naming_the_value(registry: Registry) -> None:
    for args, named in [
        (("cluster", "join-token", "jt-bad", "--ttl", "2d"), "'2d'"),  # single use: 24h at most
        (("cluster", "join-token", "jt-bad", "--ttl", "25h"), "'25h'"),
        (("cluster", "join-token", "jt-bad", "--reusable", "--ttl", "366d"), "'366d'"),
        (("cluster", "join-token", "jt-bad", "--ttl", "soon"), "'soon'"),
        (("cluster", "join-token", "jt-bad", "--ttl", "0s"), "'0s'"),
        (("cluster", "join-token", "Bad", "--reusable"), "'Bad'"),
        (("cluster", "join-token", "jt-bad", "-o", "xml"), "'xml'"),
        (("cluster", "join-tokens", "jt-bad", "-o", "csv"), "'csv'"),
        (("cluster", "revoke-token", "jt-bad", "NOT-AN-ID"), "'NOT-AN-ID'"),
        (("cluster", "revoke-token", "jt-bad", "abc"), "'abc'"),
        (
            ("cluster", "add", "jt-bad", "--region", "r", "--zone", "z", "--join-token-ttl", "3d"),
            "'3d'",
        ),
    ]:
        result = registry.run(*args)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert named in result.stderr, (args, result.stderr)
        assert result.stdout == "", (args, result.stdout)
    # the refused `cluster add` registered nothing
    missing = registry.run("cluster", "show", "jt-bad")
    assert missing.returncode == 1 and "not found" in missing.stderr
    long_single = registry.run("cluster", "join-token", "jt-bad", "--ttl", "2d")
    assert "add --reusable for up to 365d" in long_single.stderr
