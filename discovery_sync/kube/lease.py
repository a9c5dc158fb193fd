"""The leader-election shell: a `coordination.k8s.io/v1` Lease read and written in a loop.

`LeaderElector.run` does what client-go's `LeaderElector.Run` does, with the
decisions taken by the pure `discovery_sync.leader`: every retry period it GETs
the Lease `meshfed-agent-<cluster>`, lets `leader.decide` choose, and creates it
(POST) or replaces it (PUT, carrying the resourceVersion it read). A 409 (someone
wrote first) re-reads at once; other failures wait a retry period. The leader
stops leading when its renew deadline passes without a successful write, even if
a request hangs (each call is bounded by the time left). Stopped on purpose
(cancelled), it releases the Lease so a follower takes over at its next read.

`Fence` is how the rest of the agent learns whether it may write: it answers from
the same deadline, on any thread, at the moment of the write. `FencedApiClient`
puts it under every request of a `kubernetes` ApiClient: while this replica does
not lead, every POST/PUT/PATCH/DELETE is refused with `NotLeader` before it is
sent; reads pass. The elector uses its own, unfenced client.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import urllib3.exceptions
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from prometheus_client import CollectorRegistry, Counter, Gauge

from discovery_sync import leader
from discovery_sync.errors import KubeConflict, KubeError
from discovery_sync.leader import Action, LeaseRecord, State, Timing

log = logging.getLogger("meshfed.agent.leader")

Obj = dict[str, Any]
T = TypeVar("T")

LEASE_API_VERSION = "coordination.k8s.io/v1"
DEFAULT_NAMESPACE = "meshfed-system"
MANAGED_BY = {"app.kubernetes.io/managed-by": "meshfed"}
_WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def lease_name(cluster: str) -> str:
    return f"meshfed-agent-{cluster}"


def default_identity() -> str:
    """`<hostname>_<pid>`: the pod name in Kubernetes; unique per process."""
    return f"{socket.gethostname()}_{os.getpid()}"


class NotLeader(KubeError):
    """A write refused locally: this replica does not hold the lease."""

    def __init__(self, method: str, url: str) -> None:
        super().__init__(f"{method} {url}: not the leader, nothing written")


class Fence:
    """Whether this replica may write now: a deadline on the monotonic clock.

    Set from the event loop, read from the threads that run the blocking client;
    a float assignment is atomic, so no lock is needed.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.deadline = -math.inf

    def allows(self) -> bool:
        return self.clock() < self.deadline


class FencedApiClient(client.ApiClient):
    """An ApiClient whose writes pass only while `fence` allows them."""

    def __init__(self, configuration: client.Configuration, fence: Fence) -> None:
        super().__init__(configuration)
        self.fence = fence

    def call_api(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        if method.upper() in _WRITES and not self.fence.allows():
            raise NotLeader(method.upper(), url.split("?", 1)[0])
        return super().call_api(method, url, *args, **kwargs)


# --- the Lease on the wire ------------------------------------------------------------


def _micro(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def record_of(obj: Obj) -> LeaseRecord:
    spec = obj.get("spec") or {}
    meta = obj.get("metadata") or {}
    duration = spec.get("leaseDurationSeconds")
    transitions = spec.get("leaseTransitions")
    return LeaseRecord(
        holder=str(spec.get("holderIdentity") or ""),
        duration=duration if isinstance(duration, int) else 0,
        acquire_time=_parse_time(spec.get("acquireTime")),
        renew_time=_parse_time(spec.get("renewTime")),
        transitions=transitions if isinstance(transitions, int) else 0,
        resource_version=str(meta.get("resourceVersion") or ""),
    )


def body_of(namespace: str, name: str, record: LeaseRecord, base: Obj | None) -> Obj:
    """The Lease to send: `base` (the object read, so others' labels and fields stay)
    with the election fields of `record` (client-go's LeaseLock.Update does the same)."""
    meta = dict((base or {}).get("metadata") or {})
    meta.update(name=name, namespace=namespace)
    if not base:
        meta["labels"] = dict(MANAGED_BY)
    meta.pop("managedFields", None)
    if record.resource_version:
        meta["resourceVersion"] = record.resource_version
    else:
        meta.pop("resourceVersion", None)
    spec = dict((base or {}).get("spec") or {})
    spec.update(
        holderIdentity=record.holder,
        leaseDurationSeconds=record.duration,
        leaseTransitions=record.transitions,
    )
    for key, value in (("acquireTime", record.acquire_time), ("renewTime", record.renew_time)):
        if value is None:
            spec.pop(key, None)
        else:
            spec[key] = _micro(value)
    return {"apiVersion": LEASE_API_VERSION, "kind": "Lease", "metadata": meta, "spec": spec}


def _translate(err: Exception, what: str) -> KubeError:
    if isinstance(err, ApiException):
        message = f"{what}: HTTP {err.status}"
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            body = json.loads(err.body or "{}")
            message += f" {body.get('reason', '')}: {body.get('message', '')}"
        return KubeConflict(message) if err.status == 409 else KubeError(message, err.status)
    return KubeError(f"{what}: {err}")


class LeaseClient:
    """Blocking get / create / replace of one Lease, on raw JSON (run in a thread)."""

    def __init__(
        self, api_client: client.ApiClient, namespace: str, name: str, *, timeout: float
    ) -> None:
        self.api = client.CoordinationV1Api(api_client)
        self.namespace = namespace
        self.name = name
        self.timeout = timeout
        self.last: Obj | None = None  # the object last read or written

    def _call(self, what: str, fn: Callable[..., Any], *args: Any) -> LeaseRecord:
        try:
            resp = fn(*args, _preload_content=False, _request_timeout=self.timeout)
            obj: Obj = json.loads(resp.data)
        except (ApiException, urllib3.exceptions.HTTPError, OSError, ValueError) as err:
            raise _translate(err, f"{what} Lease {self.namespace}/{self.name}") from err
        self.last = obj
        return record_of(obj)

    def get(self) -> LeaseRecord | None:
        """The Lease, or None when it does not exist."""
        try:
            return self._call("get", self.api.read_namespaced_lease, self.name, self.namespace)
        except KubeError as err:
            if err.status == 404:
                self.last = None
                return None
            raise

    def write(self, record: LeaseRecord) -> LeaseRecord:
        """Create the Lease (no resourceVersion) or replace the version read."""
        body = body_of(self.namespace, self.name, record, self.last)
        if not record.resource_version:
            return self._call("create", self.api.create_namespaced_lease, self.namespace, body)
        return self._call(
            "replace", self.api.replace_namespaced_lease, self.name, self.namespace, body
        )


# --- the loop ---------------------------------------------------------------------------


@dataclass
class ElectionStats:
    reads: int = 0
    writes: int = 0
    conflicts: int = 0
    errors: int = 0
    acquired: int = 0
    lost: int = 0
    released: int = 0


class ElectionMetrics:
    """Prometheus series of one elector (its own registry, like the gateway's)."""

    def __init__(self, lease: str) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.leader = Gauge(
            "meshfed_agent_leader",
            "1 while this agent replica holds its cluster's lease and writes, else 0.",
            ["lease"],
            registry=self.registry,
        ).labels(lease)
        self._transitions = Counter(
            "meshfed_agent_leader_transitions",
            "Leadership changes of this replica: acquired, lost, released.",
            ["lease", "transition"],
            registry=self.registry,
        )
        self.lease = lease
        self.leader.set(0)

    def transition(self, kind: str) -> None:
        self._transitions.labels(self.lease, kind).inc()


class LeaderElector:
    """Runs the election for one identity; `fence` and `wait_leading` tell the agent."""

    def __init__(
        self,
        leases: LeaseClient,
        identity: str,
        timing: Timing | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.leases = leases
        self.timing = timing or Timing()
        self.clock = clock
        self.wall = wall
        self.state = State(identity)
        self.fence = Fence(clock)
        self.stats = ElectionStats()
        self.metrics = ElectionMetrics(self.describe)
        self._changed = asyncio.Event()
        self._reported_leader = ""
        self._last_error = ""

    @property
    def identity(self) -> str:
        return self.state.identity

    @property
    def describe(self) -> str:
        return f"{self.leases.namespace}/{self.leases.name}"

    def is_leader(self) -> bool:
        return self.state.is_leader(self.clock(), self.timing)

    async def wait_leading(self, leading: bool) -> None:
        """Return once this replica leads (True) or does not (False)."""
        while self.state.leading != leading:
            self._changed.clear()
            await self._changed.wait()

    # --- state changes ---------------------------------------------------------------

    def _set(self, new: State, why: str = "") -> None:
        old, self.state = self.state, new
        self.fence.deadline = new.deadline(self.timing)
        if new.leading and not old.leading:
            self.stats.acquired += 1
            self.metrics.transition("acquired")
            self.metrics.leader.set(1)
            lease = new.observed
            log.info(
                "leader election: %s acquired lease %s (transitions %d); writing",
                new.identity,
                self.describe,
                lease.transitions if lease else 0,
            )
        elif old.leading and not new.leading:
            kind = "released" if why == "released" else "lost"
            self.stats.lost += kind == "lost"
            self.stats.released += kind == "released"
            self.metrics.transition(kind)
            self.metrics.leader.set(0)
            log.warning(
                "leader election: %s %s lease %s (%s); stopped writing",
                new.identity,
                kind,
                self.describe,
                why or "renew deadline passed",
            )
        if new.leader != self._reported_leader and new.leader != new.identity:
            log.info("leader election: lease %s is held by %r", self.describe, new.leader)
        self._reported_leader = new.leader
        if old.leading != new.leading:
            self._changed.set()

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        """A blocking lease call in a thread, bounded by the leader's time left."""
        limit = self.timing.renew_deadline
        if self.state.leading:
            limit = max(0.0, self.state.deadline(self.timing) - self.clock())
        try:
            return await asyncio.wait_for(asyncio.to_thread(fn, *args), limit)
        except TimeoutError:
            raise KubeError(f"lease {self.describe}: no answer in {limit:.1f}s") from None

    # --- the loop --------------------------------------------------------------------

    async def run(self) -> None:
        try:
            while True:
                next_check = await self.tick()
                if self.state.leading:  # wake at the deadline at the latest
                    next_check = min(next_check, self.state.deadline(self.timing))
                await asyncio.sleep(max(0.0, next_check - self.clock()))
                self._set(leader.expire(self.state, self.clock(), self.timing))
        finally:
            await self.release()

    async def tick(self) -> float:
        """One round of client-go's tryAcquireOrRenew; returns when to run the next."""
        t = self.timing
        for _ in range(2):  # a 409 reads again at once, once
            try:
                self.stats.reads += 1
                lease = await self._call(self.leases.get)
            except KubeError as err:
                self.stats.errors += 1
                self._warn(f"reading lease {self.describe} failed: {err}")
                self._set(leader.expire(self.state, self.clock(), t))
                return self.clock() + t.retry_period
            self._set(leader.observe(self.state, lease, self.clock()))
            decision = leader.decide(self.state, self.clock(), self.wall(), t)
            if decision.action is Action.STEP_DOWN:
                why = f"held by {lease.holder!r}" if lease else "the lease was deleted"
                if lease is not None and lease.holder == self.identity:
                    why = "renew deadline passed"
                self._set(decision.state, why)
                decision = leader.decide(self.state, self.clock(), self.wall(), t)
            if decision.write is None:
                return decision.next_check
            sent = self.clock()
            try:
                self.stats.writes += 1
                written = await self._call(self.leases.write, decision.write)
            except KubeConflict as err:
                self.stats.conflicts += 1
                log.info("leader election: %s; reading again", err)
                self._set(leader.failed(self.state, self.clock(), t))
                continue
            except KubeError as err:
                self.stats.errors += 1
                self._warn(f"writing lease {self.describe} failed: {err}")
                self._set(leader.failed(self.state, self.clock(), t))
                return self.clock() + t.retry_period
            self._set(leader.succeeded(self.state, written, sent, self.clock()))
            self._last_error = ""
            return decision.next_check
        return self.clock() + t.retry_period

    def _warn(self, message: str) -> None:
        """Log a failure once while it repeats (a missing namespace, no RBAC for leases)."""
        level = logging.DEBUG if message == self._last_error else logging.WARNING
        log.log(level, "leader election: %s; retrying every %gs", message, self.timing.retry_period)
        self._last_error = message

    async def release(self) -> None:
        """Stop leading now and, if the lease is ours, hand it back (leaseDuration 1 s)."""
        record = leader.release(self.state, self.wall())
        if not self.state.leading:
            return
        self._set(State(self.identity, self.state.observed, self.state.observed_at), "released")
        if record is None:
            return
        try:
            await asyncio.wait_for(
                asyncio.to_thread(self.leases.write, record), self.timing.retry_period
            )
        except (KubeError, TimeoutError) as err:
            log.info("leader election: lease %s not released: %s", self.describe, err)
