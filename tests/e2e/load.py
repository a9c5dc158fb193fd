"""The e2e load client: the demo's request shape (one request per new connection, so
every request goes through the egress ranker) at a steady rate on a thread inside a
namespace, and the figures drawn from its samples (who served, latency, traffic shift).
"""

from __future__ import annotations

import asyncio
import statistics
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from tests.e2e.netns import enter
from tests.e2e.process import E2EError, wait_until

# A client's request timeout. Real clients wait far longer than a gateway's 5 s
# connect timeout; the demo's 3 s would count a slow-but-served request as lost.
REQUEST_TIMEOUT = 10.0
MARKER = "e2e-plaintext-canary-7f3a9c"  # in every request; must never be seen on a wire


@dataclass(frozen=True, slots=True)
class Sample:
    sent: float  # monotonic seconds
    done: float
    served_by: str | None  # None: failed
    error: str = ""

    @property
    def latency(self) -> float:
        return self.done - self.sent


async def one_request(host: str, port: int, seq: int) -> Sample:
    sent = time.monotonic()
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port), REQUEST_TIMEOUT
        )
        try:
            payload = f"ping {seq} {MARKER}"
            writer.write(payload.encode() + b"\n")
            await writer.drain()
            remaining = REQUEST_TIMEOUT - (time.monotonic() - sent)
            line = await asyncio.wait_for(reader.readline(), max(0.1, remaining))
        finally:
            writer.close()
        cluster, _, echoed = line.decode(errors="replace").strip().partition(" ")
        if echoed != payload:
            return Sample(sent, time.monotonic(), None, f"bad reply {line[:80]!r}")
        return Sample(sent, time.monotonic(), cluster)
    except (OSError, TimeoutError) as exc:
        return Sample(sent, time.monotonic(), None, f"{type(exc).__name__} {exc}".strip())


class Load:
    """Steady requests at `rate`/s from inside namespace `ns`, on a thread of its own."""

    def __init__(self, ns: str, host: str, port: int, rate: float = 20.0) -> None:
        self.ns, self.host, self.port, self.rate = ns, host, port, rate
        self.samples: list[Sample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"load-{ns}", daemon=True)
        self.error: BaseException | None = None

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> list[Sample]:
        self._stop.set()
        self._thread.join(REQUEST_TIMEOUT + 5)
        if self.error is not None:
            raise E2EError(f"load client crashed: {self.error!r}")
        return self.samples

    def _run(self) -> None:
        try:
            enter(self.ns)
            asyncio.run(self._main())
        except BaseException as exc:
            self.error = exc

    async def _main(self) -> None:
        pending: set[asyncio.Task[None]] = set()
        interval, seq = 1.0 / self.rate, 0
        next_at = time.monotonic()

        async def run(n: int) -> None:
            self.samples.append(await one_request(self.host, self.port, n))

        while not self._stop.is_set():
            task = asyncio.create_task(run(seq))
            pending.add(task)
            task.add_done_callback(pending.discard)
            seq += 1
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        if pending:
            await asyncio.gather(*pending)

    def since(self, t: float) -> list[Sample]:
        return [s for s in list(self.samples) if s.sent >= t]

    def wait_served(self, cluster: str, after: float, timeout: float) -> float:
        """Seconds from `after` until a request sent after it is answered by `cluster`."""
        return wait_until(
            f"traffic from {self.ns} served by {cluster}",
            lambda: any(s.served_by == cluster for s in self.since(after)),
            timeout,
        )

    def run_for(self, seconds: float) -> None:
        time.sleep(seconds)


def counts(samples: list[Sample]) -> dict[str, int]:
    return dict(sorted(Counter(s.served_by or "FAILED" for s in samples).items()))


def shift_figures(
    samples: list[Sample], event: float, to: str, until: float | None = None
) -> dict[str, Any]:
    """How traffic moved to `to` after `event` (monotonic): user-visible times.

    shift_s: from the event to the first reply from `to` (a client sees the move);
    settled_s: from the event to the send time of the first request after which every
    request (sent before `until`) is answered by `to` in under 1 s; max_latency_s: the
    slowest request sent after the event.
    """
    end = until if until is not None else float("inf")
    after = sorted((s for s in samples if event <= s.sent < end), key=lambda s: s.sent)
    replies = [s.done for s in after if s.served_by == to]
    settled = None
    for i in range(len(after)):
        if all(s.served_by == to and s.latency < 1.0 for s in after[i:]):
            settled = after[i].sent - event
            break
    return {
        "shift_s": round(min(replies) - event, 3) if replies else None,
        "settled_s": round(settled, 3) if settled is not None else None,
        "max_latency_s": round(max((s.latency for s in after), default=0.0), 3),
    }


def latency_p(samples: list[Sample], q: float) -> float:
    lat = sorted(s.latency for s in samples if s.served_by)
    if not lat:
        return 0.0
    return round(lat[min(len(lat) - 1, int(q * len(lat)))], 4)


def describe(samples: list[Sample]) -> dict[str, Any]:
    failed = [s for s in samples if s.served_by is None]
    return {
        "requests": len(samples),
        "failed": len(failed),
        "served_by": counts(samples),
        "errors": sorted({s.error for s in failed})[:5],
        "p50_ms": round(1000 * latency_p(samples, 0.5), 1),
        "p99_ms": round(1000 * latency_p(samples, 0.99), 1),
    }


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q * 100) - 1]
