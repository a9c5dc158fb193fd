"""The store contract across processes: racing writers and writers killed mid-commit.

Writers run as real OS processes (`writer_proc.py`, launched with `sys.executable`)
so that they share nothing with the test but the store itself: no lock, no
connection pool, no event loop. Each prints "ready" once its store is open and
starts writing when it reads a line on stdin, so racing writers really race.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from federation.model import Endpoint, Port, TrustDomain
from federation.store import Store
from federation.store.backend import Snapshot

WRITER = str(Path(__file__).with_name("writer_proc.py"))
PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
STEP_TIMEOUT = 60.0


class Writer:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []

    @classmethod
    async def spawn(cls, *args: str) -> Writer:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            WRITER,
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        return cls(proc)

    async def readline(self, timeout: float = STEP_TIMEOUT) -> str:
        assert self.proc.stdout is not None
        try:
            raw = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        except TimeoutError:
            pytest.fail(f"writer printed nothing in {timeout} s; stderr: {await self.stderr()}")
        if not raw:
            await self.proc.wait()
            pytest.fail(f"writer exited ({self.proc.returncode}); stderr: {await self.stderr()}")
        line = raw.decode().strip()
        self.lines.append(line)
        return line

    async def stderr(self) -> str:
        if self.proc.returncode is None:
            return "(still running)"
        assert self.proc.stderr is not None
        return (await self.proc.stderr.read()).decode(errors="replace")[-3000:]

    async def ready(self) -> None:
        line = await self.readline()
        assert line == "ready", line

    def go(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"go\n")

    async def kill(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGKILL)
        await asyncio.wait_for(self.proc.wait(), STEP_TIMEOUT)


async def test_racing_writer_processes_lose_no_update(store: Store, store_url: str) -> None:
    per_writer = 40
    await store.trust_domains.create(TrustDomain("counter.local", (PEM,), sequence=0))
    writers = [
        await Writer.spawn(store_url, "increment", "counter.local", str(per_writer))
        for _ in range(2)
    ]
    try:
        for w in writers:
            await w.ready()
        for w in writers:
            w.go()
        results = [await w.readline() for w in writers]
        for w in writers:
            assert await asyncio.wait_for(w.proc.wait(), STEP_TIMEOUT) == 0, await w.stderr()
    finally:
        for w in writers:
            await w.kill()
    done = [int(r.split()[1]) for r in results]
    assert done == [per_writer, per_writer], results
    final = await store.trust_domains.get("counter.local")
    assert final.record.sequence == 2 * per_writer, (
        f"lost updates: counter is {final.record.sequence} after {2 * per_writer} increments "
        f"(writers reported {results})"
    )


def _addresses(tag: int, count: int) -> set[str]:
    """The addresses writer_proc.py writes for endpoint set `tag`."""
    return {f"10.{tag}.{i // 256}.{i % 256}" for i in range(count)}


def _which(addresses: set[str], sets: dict[int, set[str]], when: str) -> int:
    for tag, want in sets.items():
        if addresses == want:
            return tag
    overlap = {tag: len(addresses & want) for tag, want in sets.items()}
    raise AssertionError(
        f"{when}: partial state: {len(addresses)} endpoints, overlap with each full set {overlap}"
    )


async def test_writer_killed_mid_transaction_leaves_all_or_nothing(
    store: Store, store_url: str
) -> None:
    """SIGKILL a writer at random moments of a 2,000-endpoint replacement: never half of it."""
    count, rounds = 2000, 3
    sets = {tag: _addresses(tag, count) for tag in (0, 1)}
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    ctx = f"seed={seed}"
    prefix = "shop/cart/east/"

    first = [Endpoint("east", "shop", "cart", a, (Port(8080),), zone="z1") for a in sorted(sets[0])]
    await store.replace_endpoints("east", "shop", "cart", first)
    assert len(await store.endpoints.list(prefix)) == count

    problems: list[str] = []
    reads = 0
    raw_prefix = "/meshfed/endpoints/" + prefix  # raw keys: cheap to check, no decoding

    def addresses_of(keys: Any) -> set[str]:
        return {k.rsplit("/", 1)[1] for k in keys}

    async def poll_reads() -> None:
        nonlocal reads
        while True:
            items, _ = await store.backend.list(raw_prefix)
            try:
                _which(addresses_of(kv.key for kv in items), sets, f"concurrent read ({ctx})")
            except AssertionError as exc:
                problems.append(str(exc))
            reads += 1
            await asyncio.sleep(0.05)

    mirror: set[str] = set()
    feed_revisions: list[int] = []
    it = store.backend.watch(raw_prefix)

    async def follow_feed() -> None:
        async for msg in it:
            if isinstance(msg, Snapshot):
                mirror.clear()
                mirror.update(kv.key for kv in msg.items)
            else:
                for e in msg.events:
                    if e.type == "delete":
                        mirror.discard(e.key)
                    else:
                        mirror.add(e.key)
            feed_revisions.append(msg.revision)
            try:
                _which(addresses_of(mirror), sets, f"watch at {msg.revision} ({ctx})")
            except AssertionError as exc:
                problems.append(str(exc))

    writers = [await Writer.spawn(store_url, "replace", str(count)) for _ in range(rounds)]
    background = [asyncio.create_task(poll_reads()), asyncio.create_task(follow_feed())]
    outcomes: list[str] = []
    try:
        for w in writers:
            await w.ready()
        duration = 0.0
        for n, w in enumerate(writers):
            w.go()
            assert (await w.readline()).startswith("begin"), w.lines
            if n == 0:  # time one full replacement, then kill inside the next one
                started = time.monotonic()
                assert (await w.readline()).startswith("committed"), w.lines
                duration = time.monotonic() - started
                assert (await w.readline()).startswith("begin"), w.lines
            await asyncio.sleep(rng.uniform(0.1, 0.9) * duration)
            await w.kill()
            assert w.proc.stdout is not None
            w.lines += (await w.proc.stdout.read()).decode().splitlines()
            commits = sum(1 for line in w.lines if line.startswith("committed"))
            in_flight = w.lines[-1].startswith("begin")
            outcomes.append(
                f"killed {'inside replacement' if in_flight else 'between replacements'}"
                f" after {commits} commits"
            )
            items = await store.endpoints.list(prefix)
            _which({i.record.address for i in items}, sets, f"after kill {n} ({ctx})")
        # the store is still writable and the feed converges on the final state
        final = await asyncio.wait_for(
            store.replace_endpoints("east", "shop", "cart", first), STEP_TIMEOUT
        )
        deadline = time.monotonic() + STEP_TIMEOUT
        while not feed_revisions or feed_revisions[-1] < final:
            assert time.monotonic() < deadline, f"watch never reached revision {final}"
            await asyncio.sleep(0.05)
    finally:
        for task in background:
            task.cancel()
        for w in writers:
            await w.kill()
    print(f"{ctx}: {outcomes}, {reads} concurrent reads, {len(feed_revisions)} feed messages")
    assert not problems, (outcomes, problems[:3])
    assert any("inside" in o for o in outcomes), f"no kill landed mid-replacement: {outcomes}"
    assert addresses_of(mirror) == sets[0], ctx
    assert reads > 0
    assert feed_revisions == sorted(set(feed_revisions)), ctx
