"""`meshfed serve --admin-token-file FILE` as a real process: the token `meshfed install`
generates (the Secret `meshfed-admin-token`) is stored as an admin API token at start,
so it works on the REST API of every replica; a restart with the same file changes
nothing; two processes on one store starting at once both accept it; a rotated file
replaces the old secret; a missing, empty or malformed file exits 2 naming the flag."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from federation.errors import AlreadyExists
from federation.install import admin_token
from federation.model import ApiToken
from federation.registry.auth import parse_bearer
from federation.registry.serve import open_registry
from federation.registry.trust import digest
from tests.api.conftest import cluster_body
from tests.servers.ports import clean_env
from tests.servers.serve import spawn_serve, stop_serve, wait_serve_ready
from trust_bundle import PassphraseProtector

ROOT = Path(__file__).resolve().parents[2]


def start(
    data_dir: Path, token_file: Path, env: dict[str, str]
) -> tuple[subprocess.Popen[str], str]:
    return spawn_serve(data_dir, "--admin-token-file", str(token_file), env=env)


def token_file(path: Path) -> str:
    """What `meshfed install` writes into the trust directory (and the Secret)."""
    return admin_token.ensure(path).decode().strip()


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_the_file_token_is_an_admin_token_on_first_start_and_after_a_restart(
    tmp_path: Path,
) -> None:
    trust = tmp_path / "trust"
    token = token_file(trust)
    secret = token.partition(".")[2]
    data = tmp_path / "data"
    env = clean_env()

    proc, base = start(data, trust / admin_token.FILE, env)
    try:
        wait_serve_ready(proc, base)
        r = httpx.post(f"{base}/api/v1/clusters", json=cluster_body("east"),
                       headers=auth(token), timeout=30)  # fmt: skip
        assert r.status_code == 201, r.text
        tokens = httpx.get(f"{base}/api/v1/tokens", headers=auth(token), timeout=10)
        assert tokens.status_code == 200, tokens.text
        held = {t["name"]: t["role"] for t in tokens.json()["items"]}
        assert held == {"install-admin": "admin"}  # and no other admin token was made
        wrong = auth(f"install-admin.{secrets.token_urlsafe(32)}")
        assert httpx.get(f"{base}/api/v1/clusters", headers=wrong, timeout=10).status_code == 401
    finally:
        out = stop_serve(proc)
    assert "admin token install-admin: created (--admin-token-file)" in out, out
    assert secret not in out and "Traceback" not in out
    assert not (data / "admin.token").exists()  # nothing to fetch from a pod

    proc, base = start(data, trust / admin_token.FILE, env)  # a restart: nothing to do
    try:
        wait_serve_ready(proc, base)
        r = httpx.get(f"{base}/api/v1/clusters/east", headers=auth(token), timeout=10)
        assert r.status_code == 200, r.text
    finally:
        out = stop_serve(proc)
    assert "admin token install-admin: unchanged (--admin-token-file)" in out, out

    # rotation: a new file replaces the record, so the old secret stops working
    (trust / admin_token.FILE).unlink()
    rotated = token_file(trust)
    proc, base = start(data, trust / admin_token.FILE, env)
    try:
        wait_serve_ready(proc, base)
        url = f"{base}/api/v1/clusters/east"
        assert httpx.get(url, headers=auth(rotated), timeout=10).status_code == 200
        assert httpx.get(url, headers=auth(token), timeout=10).status_code == 401
    finally:
        out = stop_serve(proc)
    assert "admin token install-admin: replaced (--admin-token-file)" in out, out
    assert rotated.partition(".")[2] not in out


def test_two_replicas_starting_at_once_on_one_store_both_accept_the_token(
    tmp_path: Path,
) -> None:
    trust = tmp_path / "trust"
    token = token_file(trust)
    data = tmp_path / "data"  # one data dir: one SQLite store, one key passphrase
    env = {**clean_env(), "MESHFED_KEY_PASSPHRASE": secrets.token_urlsafe(32)}
    procs = [start(data, trust / admin_token.FILE, env) for _ in range(2)]
    outs = []
    try:
        for proc, base in procs:
            wait_serve_ready(proc, base)
        for i, (_, base) in enumerate(procs):
            r = httpx.post(f"{base}/api/v1/clusters", json=cluster_body(f"c{i}"),
                           headers=auth(token), timeout=30)  # fmt: skip
            assert r.status_code == 201, r.text
    finally:
        for proc, _ in procs:
            outs.append(stop_serve(proc))
    actions = sorted(
        line.rsplit(": ", 1)[1] for out in outs for line in out.splitlines()
        if line.startswith("admin token install-admin:")
    )  # fmt: skip
    # one created the record; the other found it (or lost the race and read it again)
    assert actions == ["created (--admin-token-file)", "unchanged (--admin-token-file)"], outs


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read"),
        (b"", "is empty"),
        (b"\n  \n", "is empty"),
        (b"not-a-token\n", "does not hold one API token"),
        (b"install-admin.short\n", "does not hold one API token"),
        (b"Bad_Name." + b"x" * 43 + b"\n", "does not hold one API token"),
        (b"\xff\xfe garbage", "is not a text file"),
    ],
    ids=["missing", "empty", "blank", "no-dot", "short-secret", "bad-name", "binary"],
)
def test_a_bad_token_file_exits_2_naming_the_flag(
    tmp_path: Path, content: bytes | None, message: str
) -> None:
    path = tmp_path / "token"
    if content is not None:
        path.write_bytes(content)
    proc, _ = start(tmp_path / "data", path, clean_env())
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 2, out
    assert "argument --admin-token-file" in out and str(path) in out and message in out, out
    assert "Traceback" not in out
    assert not (tmp_path / "data").exists()  # refused before anything was made
    if content and content.strip():  # the content is never quoted
        assert content.strip().decode(errors="replace") not in out


def test_an_unreadable_directory_is_named(tmp_path: Path) -> None:
    proc, _ = start(tmp_path / "data", tmp_path, clean_env())  # a directory, not a file
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 2 and f"cannot read {tmp_path}" in out, out
    assert os.path.isdir(tmp_path)


def test_concurrent_ensures_create_once_and_a_lost_race_reads_again(tmp_path: Path) -> None:
    """In one process: several starts at once against one store (the compare-and-swap
    path), then a record of that name with another role, expiry or secret is replaced."""
    bearer = parse_bearer(token_file(tmp_path / "trust"))
    now = datetime.now(UTC)

    async def main() -> None:
        registry = await open_registry(
            f"sqlite:///{tmp_path / 'registry.db'}",
            PassphraseProtector(b"test-passphrase-0123456789"),
            CollectorRegistry(),
        )
        try:
            tokens = registry.tokens
            commit, lost = registry.store.commit, []

            async def counting(ops: list[Any]) -> int:
                try:
                    return await commit(ops)
                except AlreadyExists as exc:
                    lost.append(exc)
                    raise

            registry.store.commit = counting  # type: ignore[method-assign]
            actions = await asyncio.gather(
                *(tokens.ensure_token(bearer, "admin", "meshfed-serve", now) for _ in range(8))
            )
            assert sorted(actions) == ["created", *["unchanged"] * 7]
            assert lost, "the starts did not race"  # each loser read again: "unchanged"
            principal = await tokens.authenticate(f"{bearer.name}.{bearer.secret}", now)
            assert (principal.name, principal.role) == ("install-admin", "admin")
            events = [e.record for e in await registry.store.events.list()]
            assert [(e.action, e.target) for e in events if e.target_kind == "tokens"] == [
                ("create", "install-admin")
            ]
            held = await registry.store.tokens.get(bearer.name)
            for other in (
                ApiToken(bearer.name, "viewer", digest(bearer.secret), now),
                ApiToken(bearer.name, "admin", digest(bearer.secret), now, now + timedelta(1)),
                ApiToken(bearer.name, "admin", digest("another-secret"), now),
            ):
                await registry.store.tokens.update(other, held.revision)
                assert await tokens.ensure_token(bearer, "admin", "x", now) == "replaced"
                held = await registry.store.tokens.get(bearer.name)
                assert held.record.role == "admin" and held.record.expires is None
                assert held.record.secret_sha256 == digest(bearer.secret)
        finally:
            await registry.store.close()

    asyncio.run(main())
