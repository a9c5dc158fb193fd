"""Locality ranking, outlier ejection and probe health (properties), and live failover."""

from __future__ import annotations

import asyncio
import dataclasses
import random
from pathlib import Path

import pytest
import yaml
from gateway_pki import EchoServer, start_echo
from hypothesis import given
from hypothesis import strategies as st

from eastwest_gateway.gateway import Gateway
from eastwest_gateway.health import ProbeState, observe
from eastwest_gateway.ranking import (
    Candidate,
    Health,
    OutlierPolicy,
    OutlierState,
    locality_tier,
    rank,
    record_failure,
    record_success,
    uneject_on_probe,
)
from eastwest_gateway.routefile import HostPort, Locality
from eastwest_gateway.settings import GatewaySettings

localities = st.builds(Locality, st.sampled_from(["r1", "r2", "r3"]), st.sampled_from(["a", "b"]))
candidates = st.lists(
    st.builds(
        Candidate,
        name=st.text("abcdefgh", min_size=1, max_size=3),
        locality=localities,
        ready_endpoints=st.integers(0, 3),
        health=st.sampled_from(list(Health)),
        weight=st.integers(0, 5),
        priority=st.integers(0, 2),
    ),
    max_size=8,
    unique_by=lambda c: c.name,
)
outlier_states = st.builds(
    OutlierState,
    consecutive_failures=st.integers(0, 3),
    ejections=st.integers(0, 4),
    ejected_until=st.floats(0, 200),
)


@given(
    localities,
    candidates,
    st.dictionaries(st.text("abcdefgh", max_size=3), outlier_states),
    st.floats(0, 200),
    st.integers(),
)
def test_rank_properties(
    caller: Locality,
    cands: list[Candidate],
    outliers: dict[str, OutlierState],
    now: float,
    seed: int,
) -> None:
    ranked = rank(caller, cands, outliers, now, random.Random(seed))
    assert set(ranked) <= set(cands) and len(set(ranked)) == len(ranked)
    # never a cluster with no ready endpoints or a DOWN gateway
    assert all(c.ready_endpoints > 0 and c.health is not Health.DOWN for c in ranked)
    usable = [c for c in cands if c.ready_endpoints > 0 and c.health is not Health.DOWN]
    ejected = {c.name for c in usable if outliers.get(c.name, OutlierState()).is_ejected(now)}
    fresh = [c for c in usable if c.name not in ejected]
    if fresh:
        assert set(ranked) == set(fresh)  # ejected ones skipped while others remain
        keys = [(c.priority, locality_tier(caller, c.locality)) for c in ranked]
        assert keys == sorted(keys)  # priority, then zone > region > other
    else:
        assert set(ranked) == set(usable)  # last resort: ejected, soonest first


@given(st.integers(1, 5), st.floats(0.1, 10), st.integers(1, 12))
def test_ejection_doubles_and_caps(threshold: int, base: float, rounds: int) -> None:
    policy = OutlierPolicy(threshold, base, base * 8)
    state, now = OutlierState(), 0.0
    for n in range(rounds):
        for i in range(threshold):
            assert not state.is_ejected(now)
            state = record_failure(state, now, policy)
            assert state.is_ejected(now) == (i == threshold - 1)
        assert state.ejected_until - now == pytest.approx(min(base * 2**n, base * 8))
        now = state.ejected_until
    assert record_success(state) == OutlierState()


@given(outlier_states, st.floats(0, 200), st.integers(1, 40))
def test_failures_while_ejected_neither_count_nor_eject_again(
    state: OutlierState, now: float, late_failures: int
) -> None:
    """Connects that started before an ejection and fail after it (a partition: every
    connect in flight times out) leave the ejection as it is: no second ejection,
    no doubled backoff."""
    policy = OutlierPolicy(3, 30.0, 300.0)
    start = state.ejections
    for _ in range(late_failures):
        after = record_failure(state, now, policy)
        if state.is_ejected(now):
            assert after == state
        else:
            assert after.ejections - state.ejections in (0, 1)
            assert after.consecutive_failures in (0, state.consecutive_failures + 1)
        state = after
    assert state.ejections <= start + 1  # at most one ejection at one instant


def test_a_successful_probe_lifts_an_ejection_but_keeps_the_backoff_count() -> None:
    policy = OutlierPolicy(2, 30.0, 300.0)
    state = record_failure(record_failure(OutlierState(), 10.0, policy), 10.0, policy)
    assert state.is_ejected(11.0)
    lifted = uneject_on_probe(state, 11.0)
    assert not lifted.is_ejected(11.0)
    assert lifted.ejections == 1  # the next ejection still doubles (60 s)
    again = record_failure(record_failure(lifted, 12.0, policy), 12.0, policy)
    assert again.ejected_until - 12.0 == pytest.approx(60.0)
    assert uneject_on_probe(OutlierState(), 5.0) == OutlierState()  # nothing to lift


def test_weights_split_traffic_within_a_group() -> None:
    here = Locality("r1", "a")
    cands = [Candidate("x", here, weight=3), Candidate("y", here, weight=1)]
    rng = random.Random(7)
    firsts = [rank(here, cands, {}, 0, rng)[0].name for _ in range(4000)]
    assert 0.7 < firsts.count("x") / 4000 < 0.8


def test_probe_state_machine() -> None:
    s = ProbeState()
    assert s.health is Health.UNKNOWN
    assert observe(s, True).health is Health.UP
    for expected in (Health.UP, Health.UP, Health.DOWN):
        s = observe(s if s.health is not Health.UNKNOWN else observe(s, True), False)
        assert s.health is expected
    assert observe(s, True).health is Health.UP
    u = ProbeState()
    for _ in range(2):
        u = observe(u, False)
        assert u.health is Health.UNKNOWN
    assert observe(u, False).health is Health.DOWN


async def read_banner(addr: HostPort) -> bytes:
    reader, writer = await asyncio.open_connection(addr.host, addr.port)
    banner = await asyncio.wait_for(reader.readexactly(1), 5)
    writer.write(b"ping")
    assert await reader.readexactly(4) == b"ping"
    writer.close()
    return banner


async def test_nearest_killed_fails_over_without_failed_connects(tmp_path: Path) -> None:
    near = await start_echo(banner=b"N")
    mid = await start_echo(banner=b"M")
    far = await start_echo(banner=b"F")
    near_port = near.port

    def cluster(name: str, zone: str, region: str, server: EchoServer) -> dict[str, object]:
        return {
            "name": name,
            "region": region,
            "zone": zone,
            "gateways": [f"127.0.0.1:{server.port}"],
        }

    routes = {
        "locality": {"region": "r1", "zone": "a"},
        "routes": [],
        "egress": [
            {
                "listen": "127.0.0.1:0",
                "sni": "echo.demo.svc.clusterset.local",
                "mode": "passthrough",
                "clusters": [
                    cluster("far", "c", "r2", far),
                    cluster("mid", "b", "r1", mid),
                    cluster("near", "a", "r1", near),
                ],
            }
        ],
    }
    path = tmp_path / "routes.yaml"
    path.write_text(yaml.safe_dump(routes))
    settings = dataclasses.replace(
        GatewaySettings(),
        eject_after_failures=1,
        ejection_base=0.5,
        ejection_max=2.0,
        probe_interval=60.0,
        connect_timeout=1.0,
    )
    gw = Gateway("east", path, settings)
    await gw.start(HostPort("127.0.0.1", 0), None)
    try:
        addr = gw.egress.address(HostPort("127.0.0.1", 0))
        assert [await read_banner(addr) for _ in range(3)] == [b"N"] * 3

        near.kill()
        # every client connection succeeds; the first one paid one refused connect inside
        assert [await read_banner(addr) for _ in range(5)] == [b"M"] * 5
        failures = gw.metrics.connect_failures.labels("egress", "near")._value.get()
        assert failures == 1  # ejected after it: later connections went straight to mid
        assert gw.metrics.ejections.labels("near")._value.get() == 1

        near = await asyncio.start_server(
            lambda r, w: _banner(r, w, b"N"), "127.0.0.1", near_port, reuse_address=True
        )  # type: ignore[assignment]
        await asyncio.sleep(0.6)  # the 0.5 s ejection runs out
        assert await read_banner(addr) == b"N"  # traffic returns to the nearest
    finally:
        await gw.shutdown()
        for s in (mid, far):
            s.kill()
        if isinstance(near, asyncio.Server):
            near.close()


async def _banner(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, banner: bytes
) -> None:
    writer.write(banner)
    while data := await reader.read(65536):
        writer.write(data)
    writer.close()
