"""Planning a full-state report as a few transactions (federation.controlplane.fullstate)."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from federation.controlplane.fullstate import (
    MAX_TXN_OPS,
    Held,
    Txn,
    op_bytes,
    plan_full_state,
    service_ops,
)
from federation.controlplane.reports import ServiceWrite
from federation.model import Endpoint, Port, ServiceExport, ServiceKey
from federation.store.backend import ABSENT, Delete, KeyValue, Op, Put
from federation.store.typed import encode, storage_key

T0 = datetime(2026, 1, 1, tzinfo=UTC)
CLUSTER = "east"
LEASE = 7


def export(name: str, port: int = 80) -> ServiceExport:
    return ServiceExport(CLUSTER, "shop", name, T0, (Port(port),))


def ep(name: str, addr: str, weight: int = 1) -> Endpoint:
    return Endpoint(CLUSTER, "shop", name, addr, (Port(80),), "z", weight=weight)


def write(name: str, *addrs: str) -> ServiceWrite:
    return ServiceWrite(export(name), tuple(ep(name, a) for a in addrs))


def kv(record: ServiceExport | Endpoint, rev: int, lease: int = LEASE) -> KeyValue:
    return KeyValue(storage_key(record.KIND, record.key), encode(record), rev, rev, lease)


def key(name: str) -> ServiceKey:
    return ServiceKey("shop", name)


def sk(record: ServiceExport | Endpoint) -> str:
    return storage_key(record.KIND, record.key)


HELD = {
    # a: export as reported, on this lease; endpoint .1 as reported, .2 no longer.
    key("a"): Held(kv(export("a"), 10), (kv(ep("a", "10.0.0.1"), 11), kv(ep("a", "10.0.0.2"), 12))),
    # c: no longer exported.
    key("c"): Held(kv(export("c"), 20), (kv(ep("c", "10.0.0.5"), 21),)),
}
WRITES = [write("a", "10.0.0.1", "10.0.0.3"), write("b", "10.0.0.4", "10.0.0.6")]


def test_plan_writes_only_what_changed_removes_the_rest() -> None:
    [txn] = plan_full_state(WRITES, HELD, LEASE)
    assert txn.services == (key("c"), key("a"), key("b"))  # removals first
    assert txn.ops == (
        Delete(sk(ep("c", "10.0.0.5")), 21, must_exist=False),
        Delete(sk(export("c")), 20, must_exist=False),
        Delete(sk(ep("a", "10.0.0.2")), 12, must_exist=False),
        Put(sk(ep("a", "10.0.0.3")), encode(ep("a", "10.0.0.3")), ABSENT, LEASE),
        Put(sk(export("b")), encode(export("b")), ABSENT, LEASE),
        Put(sk(ep("b", "10.0.0.4")), encode(ep("b", "10.0.0.4")), ABSENT, LEASE),
        Put(sk(ep("b", "10.0.0.6")), encode(ep("b", "10.0.0.6")), ABSENT, LEASE),
    )


def test_records_of_another_lease_are_reattached_to_this_one() -> None:
    held = {key("a"): Held(kv(export("a"), 10, lease=3), (kv(ep("a", "10.0.0.1"), 11, lease=3),))}
    [txn] = plan_full_state([write("a", "10.0.0.1")], held, LEASE)
    assert txn.ops == (
        Put(sk(export("a")), encode(export("a")), 10, LEASE),
        Put(sk(ep("a", "10.0.0.1")), encode(ep("a", "10.0.0.1")), 11, LEASE),
    )


def test_an_unchanged_full_state_writes_nothing() -> None:
    held = {key("a"): Held(kv(export("a"), 10), (kv(ep("a", "10.0.0.1"), 11),))}
    assert plan_full_state([write("a", "10.0.0.1")], held, LEASE) == []
    assert plan_full_state([], {}, LEASE) == []


def test_chunks_close_before_the_op_limit_and_never_split_a_service() -> None:
    txns = plan_full_state(WRITES, HELD, LEASE, max_ops=4)
    assert [t.services for t in txns] == [(key("c"), key("a")), (key("b"),)]
    assert [len(t.ops) for t in txns] == [4, 3]


def test_a_service_larger_than_the_limit_gets_a_transaction_of_its_own() -> None:
    big = write("big", *(f"10.1.0.{i}" for i in range(1, 11)))
    txns = plan_full_state([write("a", "10.0.0.1"), big, write("b", "10.0.0.2")], {}, LEASE,
                           max_ops=5)  # fmt: skip
    assert [t.services for t in txns] == [(key("a"),), (key("big"),), (key("b"),)]
    assert len(txns[1].ops) == 11


def test_the_byte_limit_also_closes_a_chunk() -> None:
    writes = [write(f"s{i}", "10.0.0.1") for i in range(6)]
    per_service = sum(op_bytes(op) for op in service_ops(writes[0], Held(), LEASE))
    txns = plan_full_state(writes, {}, LEASE, max_bytes=per_service * 2)
    assert [len(t.services) for t in txns] == [2, 2, 2]


def test_the_default_limit_is_etcds_default_max_txn_ops() -> None:
    writes = [write(f"s{i:03}", "10.0.0.1", "10.0.0.2") for i in range(300)]
    txns = plan_full_state(writes, {}, LEASE)
    assert MAX_TXN_OPS == 128
    assert all(len(t.ops) <= 128 for t in txns)
    assert len(txns) == 8  # 42 services of 3 ops fill 126 of 128
    assert [k for t in txns for k in t.services] == [w.service for w in writes]


# -- property: whatever the store holds and the agent reports ----------------------

NAMES = [f"s{i}" for i in range(6)]
ADDRS = [f"10.0.0.{i}" for i in range(1, 7)]


@st.composite
def held_service(draw: st.DrawFn, name: str) -> Held:
    revs = iter(range(draw(st.integers(1, 1000)), 10**6))
    exp = None
    if draw(st.booleans()):
        exp = kv(export(name, draw(st.sampled_from([80, 81]))), next(revs),
                 draw(st.sampled_from([LEASE, 3])))  # fmt: skip
    addrs = draw(st.lists(st.sampled_from(ADDRS), unique=True))
    eps = tuple(
        kv(ep(name, a, draw(st.integers(1, 2))), next(revs), draw(st.sampled_from([LEASE, 3])))
        for a in sorted(addrs)
    )
    return Held(exp, eps)


@st.composite
def scenario(draw: st.DrawFn) -> tuple[list[ServiceWrite], dict[ServiceKey, Held]]:
    held_names = draw(st.lists(st.sampled_from(NAMES), unique=True))
    held = {key(n): draw(held_service(n)) for n in held_names}
    written = draw(st.lists(st.sampled_from(NAMES), unique=True))
    writes = [
        write(n, *draw(st.lists(st.sampled_from(ADDRS), unique=True, max_size=len(ADDRS))))
        for n in written
    ]
    return writes, held


def stored(held: dict[ServiceKey, Held]) -> dict[str, KeyValue]:
    return {
        kv.key: kv
        for h in held.values()
        for kv in ([h.export] if h.export else []) + list(h.endpoints)
    }


def apply(state: dict[str, KeyValue], txns: list[Txn]) -> dict[str, tuple[bytes, int]]:
    """Run the transactions against a model store, checking every expectation."""
    now = {k: (v.value, v.lease) for k, v in state.items()}
    for txn in txns:
        for op in txn.ops:
            current = state.get(op.key)
            if isinstance(op, Put):
                assert op.expect == (current.mod_revision if current else ABSENT)
                now[op.key] = (op.value, op.lease)
            else:
                assert current is not None and op.expect == current.mod_revision
                assert not op.must_exist  # one compare per op (the etcd limit counts them)
                del now[op.key]
    return now


@settings(max_examples=300, deadline=None)
@given(scenario(), st.integers(1, 12), st.integers(200, 3000))
def test_chunks_are_whole_services_within_limits_covering_exactly_the_change(
    case: tuple[list[ServiceWrite], dict[ServiceKey, Held]], max_ops: int, max_bytes: int
) -> None:
    writes, held = case
    txns = plan_full_state(writes, held, LEASE, max_ops=max_ops, max_bytes=max_bytes)
    # Never split: each service is in at most one transaction, with all of its ops.
    services = [k for t in txns for k in t.services]
    assert len(services) == len(set(services))
    by_service = {w.service: w for w in writes}
    for txn in txns:
        expected: list[Op] = []
        for k in txn.services:
            expected += service_ops(by_service.get(k), held.get(k, Held()), LEASE)
        assert list(txn.ops) == expected
        keys = [op.key for op in txn.ops]
        assert len(keys) == len(set(keys))
        # Within the limits, unless one service alone exceeds them.
        size = sum(op_bytes(op) for op in txn.ops)
        if len(txn.services) > 1:
            assert len(txn.ops) <= max_ops and size <= max_bytes
    # Cover exactly the upserts and removals: every service that needs a change
    # is planned, none that does not.
    changing = {
        k
        for k in set(held) | set(by_service)
        if service_ops(by_service.get(k), held.get(k, Held()), LEASE)
    }
    assert set(services) == changing
    # And applying them leaves exactly the full state, on the stream's lease.
    want = {
        storage_key(r.KIND, r.key): (encode(r), LEASE)
        for w in writes
        for r in [w.export, *w.endpoints]
    }
    assert apply(stored(held), txns) == want
