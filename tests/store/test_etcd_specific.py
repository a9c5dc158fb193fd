"""What only the etcd backend has to prove, on real etcd servers (no mocks).

The generic contract suite (test_contract*.py) holds every backend to `Backend`'s
semantics. This file covers what is etcd's own: the watch surviving a member restart
and a leader being SIGKILLed (no gap, no duplicate, no acknowledged write lost),
compaction turning into a resync snapshot, URL namespaces, URL validation and
unreachable endpoints.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator

import pytest

from federation.errors import BadStoreURL, StoreUnavailable
from federation.store import open_backend
from federation.store.backend import Changes, Put, Snapshot, WatchMessage
from federation.store.etcd import EtcdBackend
from tests.servers.etcd import EtcdCluster, EtcdServer, free_port

# Generous bound for anything that should take milliseconds (loaded CI machines).
PATIENCE = 15.0


@pytest.fixture
def server() -> Iterator[EtcdServer]:
    with EtcdServer() as s:
        yield s


@pytest.fixture
async def backend(server: EtcdServer) -> AsyncIterator[EtcdBackend]:
    b = await EtcdBackend.open(server.url_for("t"))
    yield b
    await b.close()


class Collector:
    """Drains a watch into `messages` in a background task."""

    def __init__(self, feed: AsyncIterator[WatchMessage]) -> None:
        self.feed = feed
        self.messages: list[WatchMessage] = []
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        async for message in self.feed:
            self.messages.append(message)

    def revisions(self) -> list[int]:
        return [m.revision for m in self.messages if isinstance(m, Changes)]

    async def until(self, revision: int) -> None:
        deadline = time.monotonic() + PATIENCE
        while not any(m.revision >= revision for m in self.messages):
            if self.task.done():
                self.task.result()
                raise AssertionError("watch ended early")
            assert time.monotonic() < deadline, (
                f"watch never reached {revision}: {self.revisions()}"
            )
            await asyncio.sleep(0.01)

    async def started(self) -> Snapshot:
        """Wait for the initial snapshot (so later writes are known to come as Changes)."""
        await self.until(0)
        first = self.messages[0]
        assert isinstance(first, Snapshot)
        return first

    async def stop(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        await self.feed.aclose()  # type: ignore[attr-defined]


async def commit_retrying(b: EtcdBackend, key: str, value: bytes) -> int:
    """Commit until acknowledged, as a client facing a failing-over etcd would."""
    deadline = time.monotonic() + PATIENCE
    while True:
        try:
            return await b.commit([Put(key, value)])
        except StoreUnavailable:
            assert time.monotonic() < deadline, f"write of {key} never acknowledged"
            await asyncio.sleep(0.02)


def assert_no_gap_no_duplicate(first: Snapshot, revisions: list[int], last: int) -> None:
    # The server is private to the test, so every revision after the snapshot is ours
    # and must arrive exactly once, in order.
    assert revisions == list(range(first.revision + 1, last + 1))


async def test_watch_resumes_across_member_restart(server: EtcdServer) -> None:
    b = await EtcdBackend.open(server.url_for("restart"))
    feed = Collector(b.watch(""))
    await feed.started()
    acked: dict[str, int] = {}
    for i in range(5):
        acked[f"before/{i}"] = await b.commit([Put(f"before/{i}", b"x")])

    async def writer_during() -> None:
        for i in range(20):
            acked[f"during/{i}"] = await commit_retrying(b, f"during/{i}", b"y")
            await asyncio.sleep(0.005)

    writing = asyncio.create_task(writer_during())
    await asyncio.sleep(0.02)
    await asyncio.to_thread(server.restart, kill=True)
    await writing
    for i in range(5):
        acked[f"after/{i}"] = await commit_retrying(b, f"after/{i}", b"z")

    last = await b.revision()
    await feed.until(last)
    await feed.stop()
    snapshot = feed.messages[0]
    assert isinstance(snapshot, Snapshot) and not snapshot.resync
    assert_no_gap_no_duplicate(snapshot, feed.revisions(), last)
    delivered = {
        e.key: c.revision for c in feed.messages if isinstance(c, Changes) for e in c.events
    }
    for key, rev in acked.items():
        assert delivered[key] == rev, key
    await b.close()


async def test_leader_killed_while_writing_loses_no_acknowledged_write() -> None:
    with EtcdCluster(3) as cluster:
        # A Txn in flight to the dying leader is lost and etcd answers it only after its
        # request timeout (5 s + 2 elections); a 1 s client timeout makes the writer
        # retry sooner.
        b = await EtcdBackend.open(cluster.client_url("ha") + "?timeout=1")
        feed = Collector(b.watch(""))
        await feed.started()
        acked: dict[str, int] = {}
        stop = asyncio.Event()

        async def writer() -> None:
            i = 0
            while not stop.is_set() or i < 30:
                acked[f"k{i:04d}"] = await commit_retrying(b, f"k{i:04d}", str(i).encode())
                i += 1

        writing = asyncio.create_task(writer())
        while len(acked) < 10:
            await asyncio.sleep(0.005)
        leader = await asyncio.to_thread(cluster.leader)
        killed_at = len(acked)
        await asyncio.to_thread(cluster.kill, leader)
        new_leader = await asyncio.to_thread(cluster.leader)
        assert new_leader is not leader
        while len(acked) < killed_at + 20:
            await asyncio.sleep(0.005)
        stop.set()
        await writing

        for key, rev in acked.items():
            kv = await b.get(key)
            assert kv is not None, f"acknowledged write {key}@{rev} lost"
            assert kv.mod_revision == rev
        last = await b.revision()
        await feed.until(last)
        await feed.stop()
        snapshot = feed.messages[0]
        assert isinstance(snapshot, Snapshot)
        revisions = feed.revisions()
        assert_no_gap_no_duplicate(snapshot, revisions, last)
        assert set(acked.values()) <= set(revisions)
        await b.close()


async def test_compacted_history_gives_resync_snapshot(backend: EtcdBackend) -> None:
    old = await backend.commit([Put("a", b"1")])
    await backend.commit([Put("a", b"2")])
    mid = await backend.commit([Put("b", b"1")])
    await backend.compact(mid)
    feed = backend.watch("", since=old)
    first = await asyncio.wait_for(anext(feed), PATIENCE)
    assert isinstance(first, Snapshot) and first.resync
    assert first.revision >= mid
    assert {kv.key: kv.value for kv in first.items} == {"a": b"2", "b": b"1"}
    after = await backend.commit([Put("c", b"1")])
    nxt = await asyncio.wait_for(anext(feed), PATIENCE)
    assert isinstance(nxt, Changes) and nxt.revision == after
    await feed.aclose()  # type: ignore[attr-defined]

    # Watching from the compaction revision itself needs no resync.
    feed = backend.watch("", since=mid)
    nxt = await asyncio.wait_for(anext(feed), PATIENCE)
    assert isinstance(nxt, Changes) and nxt.revision == after
    await feed.aclose()  # type: ignore[attr-defined]


async def test_namespaces_isolate_backends(server: EtcdServer) -> None:
    a = await EtcdBackend.open(server.url_for("team-a"))
    b = await EtcdBackend.open(server.url_for("team-b/sub"))
    raw = await EtcdBackend.open(server.url)
    try:
        feed_b = b.watch("")
        assert (await anext(feed_b)).items == ()  # type: ignore[union-attr]
        rev_a = await a.commit([Put("k", b"from-a"), Put("only-a", b"1")])
        rev_b = await b.commit([Put("k", b"from-b")])
        assert [kv.key for kv in (await a.list(""))[0]] == ["k", "only-a"]
        assert [kv.key for kv in (await b.list(""))[0]] == ["k"]
        assert (await a.get("k")).value == b"from-a"  # type: ignore[union-attr]
        assert (await b.get("k")).value == b"from-b"  # type: ignore[union-attr]
        assert await b.get("only-a") is None
        # b's feed skips a's revision entirely.
        changes = await asyncio.wait_for(anext(feed_b), PATIENCE)
        assert isinstance(changes, Changes) and changes.revision == rev_b != rev_a
        assert [e.key for e in changes.events] == ["k"]
        await feed_b.aclose()  # type: ignore[attr-defined]
        raw_keys = [kv.key for kv in (await raw.list(""))[0]]
        assert raw_keys == ["/team-a/k", "/team-a/only-a", "/team-b/sub/k"]
    finally:
        for x in (a, b, raw):
            await x.close()


@pytest.mark.parametrize(
    ("url", "named"),
    [
        ("etcd://", "no endpoints"),
        ("etcd://127.0.0.1:99999", "'99999'"),
        ("etcd://127.0.0.1:2379,", "empty endpoint"),
        ("etcd://bad_host!:2379", "'bad_host!'"),
        ("etcd://[::1:2379", "IPv6"),
        ("etcd://127.0.0.1:2379/ns?foo=1", "'foo'"),
        ("etcd://127.0.0.1:2379?cert=/x.pem", "'cert' and 'key'"),
        ("etcd://127.0.0.1:2379/bad ns", "'bad ns'"),
        ("etcd://user:pw@127.0.0.1:2379", "credentials"),
        ("etcd://127.0.0.1:2379?timeout=abc", "'timeout'"),
        ("etcd://127.0.0.1:2379?cacert=/nonexistent/ca.pem", "/nonexistent/ca.pem"),
    ],
)
async def test_bad_urls_are_rejected_naming_the_bad_part(url: str, named: str) -> None:
    with pytest.raises(BadStoreURL) as info:
        await EtcdBackend.open(url)
    assert named in str(info.value)
    assert "pw" not in str(info.value)


async def test_open_backend_dispatches_etcd_urls_here() -> None:
    with pytest.raises(BadStoreURL, match="'nope'"):
        await open_backend("etcd://127.0.0.1:2379?nope=1")


async def test_unreachable_endpoints_fail_fast() -> None:
    dead = [f"127.0.0.1:{free_port()}" for _ in range(2)]
    start = time.monotonic()
    with pytest.raises(StoreUnavailable) as info:
        await open_backend("etcd://" + ",".join(dead))
    assert time.monotonic() - start < 5
    assert dead[0] in str(info.value) and dead[1] in str(info.value)


async def test_watch_ends_on_aclose_and_on_backend_close(server: EtcdServer) -> None:
    b = await EtcdBackend.open(server.url_for("close"))
    feed = b.watch("")
    assert isinstance(await anext(feed), Snapshot)
    pending = asyncio.ensure_future(anext(feed))
    await asyncio.sleep(0.05)
    other = b.watch("", since=0)
    other_task = asyncio.ensure_future(anext(other))
    await asyncio.sleep(0.05)
    await b.close()
    for task in (pending, other_task):
        with pytest.raises(StopAsyncIteration):
            await asyncio.wait_for(task, PATIENCE)

    b = await EtcdBackend.open(server.url_for("close"))
    feed = b.watch("")
    await anext(feed)
    await feed.aclose()  # type: ignore[attr-defined]
    await b.close()


async def test_mutual_tls() -> None:
    with EtcdServer(tls=True) as server:
        assert server.tls is not None
        b = await EtcdBackend.open(server.url_for("tls"))
        try:
            rev = await b.commit([Put("k", b"v")])
            assert (await b.get("k")).mod_revision == rev  # type: ignore[union-attr]
        finally:
            await b.close()
        # No client certificate: the server refuses; the client reports it unreachable.
        no_cert = f"etcd://{server.endpoint}?cacert={server.tls.cacert}"
        with pytest.raises(StoreUnavailable):
            await EtcdBackend.open(no_cert)
