"""`meshfed store check`: prove a store URL works, one pass/fail line per property.

Each check exercises what the registry relies on (schema, compare-and-swap, the
change feed, lease expiry) against the real store, under a scratch key prefix
that is removed afterwards, and reports like `linkerd check`: a line per check,
exit code 1 if any failed.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from federation.errors import Conflict, FederationError
from federation.store import Backend, open_backend
from federation.store.backend import ABSENT, Changes, Delete, Put

SCRATCH = "/meshfed-check/"
FEED_TIMEOUT = 5.0  # seconds; a healthy store delivers in milliseconds
LEASE_TTL = 1.0  # seconds: the shortest TTL etcd grants (integer seconds, minimum 1)


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str
    seconds: float


Check = Callable[[Backend, str], Awaitable[str]]


async def _cas(backend: Backend, prefix: str) -> str:
    key = prefix + "cas"
    rev = await backend.commit([Put(key, b"1", ABSENT)])
    await backend.commit([Put(key, b"2", rev)])
    try:
        await backend.commit([Put(key, b"3", rev)])
    except Conflict:
        pass
    else:
        raise AssertionError("a write against a stale revision was accepted")
    got = await backend.get(key)
    if got is None or got.value != b"2":
        raise AssertionError(f"read back {got!r}, wanted value 2")
    return "stale write refused, value intact"


async def _feed(backend: Backend, prefix: str) -> str:
    key = prefix + "feed"
    since = await backend.revision()
    feed = backend.watch(prefix, since)
    rev = await backend.commit([Put(key, b"x")])

    async def first() -> Changes:
        async for message in feed:
            if isinstance(message, Changes):
                return message
        raise AssertionError("feed ended")

    started = time.perf_counter()
    try:
        message = await asyncio.wait_for(first(), FEED_TIMEOUT)
    finally:
        await feed.aclose()
    if message.revision != rev:
        raise AssertionError(f"feed gave revision {message.revision}, commit was {rev}")
    return f"write seen by a watcher in {(time.perf_counter() - started) * 1000:.1f} ms"


async def _lease(backend: Backend, prefix: str) -> str:
    key = prefix + "lease"
    lease = await backend.lease_grant(LEASE_TTL)
    await backend.commit([Put(key, b"x", lease=lease)])
    deadline = time.monotonic() + LEASE_TTL + 4.0
    while time.monotonic() < deadline:
        if await backend.get(key) is None:
            return "leased key removed after its TTL"
        await asyncio.sleep(0.1)
    raise AssertionError("leased key still present long after its TTL")


CHECKS: tuple[tuple[str, Check], ...] = (
    ("compare-and-swap rejects stale writes", _cas),
    ("change feed delivers commits", _feed),
    ("lease expiry removes keys", _lease),
)


async def run_checks(url: str, report: Callable[[CheckResult], None]) -> bool:
    started = time.perf_counter()
    try:
        backend = await open_backend(url)
    except FederationError as exc:
        report(CheckResult("store reachable, schema current", False, str(exc), 0.0))
        return False
    report(CheckResult("store reachable, schema current", True, "", time.perf_counter() - started))
    prefix = f"{SCRATCH}{secrets.token_hex(4)}/"
    ok = True
    try:
        for name, check in CHECKS:
            started = time.perf_counter()
            try:
                detail = await check(backend, prefix)
                report(CheckResult(name, True, detail, time.perf_counter() - started))
            except (AssertionError, FederationError) as exc:
                ok = False
                report(CheckResult(name, False, str(exc), time.perf_counter() - started))
        items, _ = await backend.list(prefix)
        await backend.commit([Delete(kv.key, must_exist=False) for kv in items])
    finally:
        await backend.close()
    return ok
