"""Leader election, the pure state machine (`discovery_sync.leader`).

The property tests run candidates against a model of the API server's Lease: one
record, a resourceVersion bumped by every write, a PUT or POST that carries a
stale version refused (409). Reads, writes landing, answers arriving, timers
firing, crashes and the passing of time are interleaved by hypothesis, on one
shared clock; a write may land long after it was decided and its answer arrive
long after that.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from discovery_sync.leader import (
    LEASE_DURATION,
    RENEW_DEADLINE,
    RETRY_PERIOD,
    Action,
    Decision,
    LeaseRecord,
    State,
    Timing,
    decide,
    expire,
    failed,
    observe,
    release,
    succeeded,
)
from discovery_sync.main import parser, run

T = Timing()
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


def wall(now: float) -> datetime:
    return EPOCH + timedelta(seconds=now)


def test_defaults_are_client_gos_and_validated_like_it() -> None:
    assert (LEASE_DURATION, RENEW_DEADLINE, RETRY_PERIOD) == (15, 10.0, 2.0)
    assert Timing(15, 10.0, 2.0) == T
    for bad in (
        dict(lease_duration=10, renew_deadline=10.0),  # lease must outlast the deadline
        dict(renew_deadline=2.4, retry_period=2.0),  # deadline > 1.2 x retry
        dict(lease_duration=0, renew_deadline=0.5, retry_period=0.1),
        dict(retry_period=0.0),
        dict(lease_duration=1.5),  # leaseDurationSeconds is whole seconds
    ):
        with pytest.raises(ValueError):
            Timing(**bad)  # type: ignore[arg-type]


def test_walkthrough_acquire_renew_wait_take_over_step_down() -> None:
    a, b = State("a"), State("b")
    # nobody has the Lease: create it
    a = observe(a, None, 0.0)
    d = decide(a, 0.0, wall(0), T)
    assert d.action is Action.ACQUIRE and d.create
    assert d.write == LeaseRecord("a", 15, wall(0), wall(0), 0, "")
    a = succeeded(d.state, replace(d.write, resource_version="101"), sent_at=0.0, now=0.1)
    assert a.is_leader(0.1, T) and not a.is_leader(10.0, T) and a.deadline(T) == 10.0
    # b sees it held: waits, next look at the retry period or the expiry, whichever first
    b = observe(b, a.observed, 0.5)
    d = decide(b, 0.5, wall(0.5), T)
    assert d.action is Action.WAIT and d.write is None and d.next_check == 2.5
    d = decide(b, 14.0, wall(14), T)
    assert d.action is Action.WAIT and d.next_check == 15.5  # the lease's expiry
    # a renews: renewTime moves, acquireTime and transitions stay
    d = decide(observe(a, a.observed, 2.0), 2.0, wall(2), T)
    assert d.action is Action.RENEW and d.write is not None
    assert d.write.renew_time == wall(2) and d.write.acquire_time == wall(0)
    assert d.write.resource_version == "101" and d.next_check == 4.0
    # a stops renewing; at its renew deadline it steps down ...
    d = decide(a, 10.0, wall(10), T)
    assert d.action is Action.STEP_DOWN and not d.state.leading
    assert expire(a, 10.0, T).leading is False and expire(a, 9.9, T).leading
    # ... and b, which saw version 101 at 0.5, takes it at 15.5, not before
    assert decide(b, 15.49, wall(15.49), T).action is Action.WAIT
    d = decide(b, 15.5, wall(15.5), T)
    assert d.action is Action.ACQUIRE and not d.create and d.write is not None
    assert (d.write.holder, d.write.transitions, d.write.resource_version) == ("b", 1, "101")
    # a leader that reads someone else's name stops at once
    other = LeaseRecord("b", 15, wall(16), wall(16), 1, "102")
    d = decide(observe(a, other, 5.0), 5.0, wall(5), T)
    assert d.action is Action.STEP_DOWN
    # a leader whose Lease was deleted stops too
    assert decide(observe(a, None, 5.0), 5.0, wall(5), T).action is Action.STEP_DOWN


def test_observation_time_moves_only_when_the_record_changes() -> None:
    rec = LeaseRecord("a", 15, wall(0), wall(0), 0, "7")
    b = observe(State("b"), rec, 1.0)
    assert observe(b, rec, 9.0).observed_at == 1.0  # the same version: the clock runs on
    renewed = replace(rec, renew_time=wall(2), resource_version="8")
    assert observe(b, renewed, 9.0).observed_at == 9.0


def test_release_hands_the_lease_over_at_once() -> None:
    rec = LeaseRecord("a", 15, wall(0), wall(0), 3, "7")
    a = succeeded(State("a"), rec, 0.0, 0.0)
    out = release(a, wall(1))
    assert out == LeaseRecord("", 1, wall(1), wall(1), 3, "7")
    assert release(State("b"), wall(1)) is None
    b = observe(State("b"), replace(out, resource_version="8"), 1.5)
    d = decide(b, 1.5, wall(1.5), T)
    assert d.action is Action.ACQUIRE and d.write is not None and d.write.transitions == 4


def test_a_write_that_failed_leaves_the_leader_until_its_deadline() -> None:
    a = succeeded(State("a"), LeaseRecord("a", 15, wall(0), wall(0), 0, "7"), 0.0, 0.0)
    assert failed(a, 5.0, T).leading and not failed(a, 10.0, T).leading


def test_a_stale_answer_does_not_extend_the_lead() -> None:
    """The lead is timed from when the write was sent, not when its answer came."""
    a = succeeded(State("a"), LeaseRecord("a", 15, wall(0), wall(0), 0, "7"), 0.0, 12.0)
    assert a.leading and not a.is_leader(12.0, T)


# --- the model: a Lease store with optimistic concurrency -------------------------------


@dataclass
class Store:
    lease: LeaseRecord | None = None
    version: int = 100

    def write(self, record: LeaseRecord) -> LeaseRecord | None:
        """The API server's POST/PUT: None (409) unless the version read is current."""
        current = self.lease.resource_version if self.lease else ""
        if record.resource_version != current:
            return None
        self.version += 1
        self.lease = replace(record, resource_version=str(self.version))
        return self.lease


@dataclass
class Candidate:
    state: State
    alive: bool = True
    pending: tuple[LeaseRecord, float] | None = None  # a write decided, not yet landed
    answer: tuple[LeaseRecord | None, float] | None = None  # landed, answer not yet seen
    next_check: float = 0.0


def read_and_decide(c: Candidate, store: Store, now: float, timing: Timing) -> Decision:
    """What the shell does on a tick: read, observe, decide (a step-down decides again)."""
    c.state = observe(c.state, store.lease, now)
    d = decide(c.state, now, wall(now), timing)
    if d.action is Action.STEP_DOWN:
        c.state = d.state
        d = decide(c.state, now, wall(now), timing)
    c.state = d.state
    c.next_check = d.next_check
    return d


# Latencies in lease durations: mostly none or small, now and then as long as the
# deadlines, or a stall (a GC pause, a slow API server) longer than the lease.
DELAYS = st.lists(
    st.sampled_from([0.0] * 8 + [0.01, 0.05, 0.1, 0.2, 0.3, 0.45, 0.5, 0.55, 0.7, 1.0, 1.5]),
    max_size=300,
)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    delays=DELAYS,
    n=st.integers(2, 3),
    timing=st.sampled_from([Timing(2, 1.0, 0.25), T]),
    crashes=st.lists(st.one_of(st.none(), st.floats(0.0, 5.0, allow_nan=False)), max_size=3),
)
def test_at_most_one_leader_across_interleavings(
    delays: list[float], n: int, timing: Timing, crashes: list[float | None]
) -> None:
    """Candidates run the shell's loop (read and decide; the write lands; the answer
    arrives; wait until `next_check`) with every step delayed by a drawn latency, so
    a write may land, and its answer arrive, long after it was decided; some crash."""
    store = Store()
    cands = [Candidate(State(f"c{i}")) for i in range(n)]
    crash_at = [(crashes[i] if i < len(crashes) else None) for i in range(n)]  # in lease durations
    draws = iter(delays)
    queue = [(0.0, i, "tick") for i in range(n)]
    for _ in range(400):
        if not queue:
            break
        queue.sort()
        now, i, kind = queue.pop(0)
        c = cands[i]
        limit = crash_at[i]
        if limit is not None and now >= limit * timing.lease_duration and i > 0:
            c.alive = False  # a crashed process writes nothing more (c0 never crashes)
        if not c.alive:
            continue
        delay = next(draws, 0.0) * timing.lease_duration
        if kind == "tick":
            d = read_and_decide(c, store, now, timing)
            if d.write is not None:
                c.pending = (d.write, now)
                queue.append((now + delay, i, "land"))
            else:
                queue.append((max(now, c.next_check) + delay, i, "tick"))
        elif kind == "land":
            assert c.pending is not None
            record, sent = c.pending
            c.pending, c.answer = None, (store.write(record), sent)
            queue.append((now + delay, i, "answer"))
        else:
            assert c.answer is not None
            written, sent = c.answer
            c.answer = None
            if written is None:  # 409: read again at once
                c.state = failed(c.state, now, timing)
                queue.append((now + delay, i, "tick"))
            else:
                c.state = succeeded(c.state, written, sent, now)
                queue.append((max(now, c.next_check) + delay, i, "tick"))
        current = [x.state.identity for x in cands if x.alive and x.state.is_leader(now, timing)]
        assert len(current) <= 1, (current, now)
        # whoever leads is the one the store names: nobody took the Lease from under it
        if current:
            assert store.lease is not None and store.lease.holder == current[0]


@settings(max_examples=300, deadline=None)
@given(
    crash_at=st.floats(0.0, 60.0, allow_nan=False),
    phase=st.floats(0.0, 1.0, allow_nan=False, exclude_max=True),
    timing=st.sampled_from([T, Timing(2, 1.0, 0.25), Timing(60, 30.0, 5.0)]),
)
def test_a_crashed_leader_is_replaced_after_the_lease_duration(
    crash_at: float, phase: float, timing: Timing
) -> None:
    """Two candidates on their own schedules, instant requests: a leads until it
    crashes; b takes over no sooner than a lease duration after a's last write and
    no later than a lease duration plus a retry period after the crash."""
    store = Store()
    a, b = Candidate(State("a")), Candidate(State("b"), next_check=phase * timing.retry_period)
    last_write = -math.inf
    now = 0.0
    events = 0
    while True:
        events += 1
        assert events < 10_000
        due = [(x.next_check, x) for x in (a, b) if x.alive]
        now, c = min(due, key=lambda p: p[0])
        if c is a and now >= crash_at:
            a.alive = False
            continue
        c.state = observe(c.state, store.lease, now)
        d = decide(c.state, now, wall(now), timing)
        if d.action is Action.STEP_DOWN:
            d = decide(d.state, now, wall(now), timing)
        c.state, c.next_check = d.state, d.next_check
        if d.write is not None:
            written = store.write(d.write)
            if written is None:
                c.state = failed(c.state, now, timing)
                c.next_check = now  # the shell reads again at once after a 409
            else:
                c.state = succeeded(c.state, written, now, now)
                if c is a:
                    last_write = now
        if c is b and b.state.is_leader(now, timing):
            break
        if c is a:
            assert not b.state.leading
    assert a.state.leading or last_write == -math.inf  # a led until it crashed
    assert now >= last_write + timing.lease_duration
    assert now <= max(crash_at, 0.0) + timing.lease_duration + timing.retry_period + 1e-9


# --- flags --------------------------------------------------------------------------------


def _base(tmp_path: Path) -> list[str]:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n")
    return ["--cluster", "east", "--registry", "127.0.0.1:9471", "--join-token", "abcdef.s3cret",
            "--trust-domain", "east.test", "--registry-ca", str(ca)]  # fmt: skip


def test_flags_default_on_with_kubernetes_off_with_static(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from discovery_sync.main import config_from

    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("{}")
    p = parser()
    cfg = config_from(p.parse_args([*_base(tmp_path), "--kubeconfig", str(kubeconfig)]), p)
    assert cfg.leader_elect and cfg.lease_namespace == "meshfed-system"
    assert cfg.identity.rsplit("_", 1)[1].isdigit() and cfg.lease_timing == Timing()
    static = [*_base(tmp_path), "--static", str(kubeconfig)]
    assert not config_from(p.parse_args(static), p).leader_elect
    cfg = config_from(
        p.parse_args(
            [*_base(tmp_path), "--in-cluster", "--no-leader-elect", "--identity", "pod-0"]
        ),
        p,
    )
    assert not cfg.leader_elect and cfg.identity == "pod-0"
    args = [*_base(tmp_path), "--in-cluster", "--lease-namespace", "ops",
            "--leader-elect-lease-duration", "4", "--leader-elect-renew-deadline", "3",
            "--leader-elect-retry-period", "1"]  # fmt: skip
    cfg = config_from(p.parse_args(args), p)
    assert cfg.lease_namespace == "ops" and cfg.lease_timing == Timing(4, 3.0, 1.0)
    for extra, flag in (
        (["--static", str(kubeconfig), "--leader-elect"], "--leader-elect"),
        (["--in-cluster", "--leader-elect-renew-deadline", "20"], "renew deadline"),
        (["--in-cluster", "--lease-namespace", "Bad_NS"], "--lease-namespace"),
    ):
        with pytest.raises(SystemExit) as exit_:
            run([*_base(tmp_path), *extra])
        assert exit_.value.code == 2
        assert flag in capsys.readouterr().err
