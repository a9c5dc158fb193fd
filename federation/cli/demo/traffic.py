"""Steady traffic from the client cluster and what it shows (pure summary + thin loop).

One request per new connection (so every request exercises the egress ranker),
at a fixed rate. A request is a line out, a line back naming the serving cluster;
anything else (refused, reset, timeout, wrong reply) is a failure.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field

REQUEST_TIMEOUT = 3.0  # seconds: well above a loopback round trip through two gateways


@dataclass(frozen=True, slots=True)
class Sample:
    at: float  # monotonic seconds
    served_by: str | None  # None: failed
    error: str = ""


@dataclass
class Recorder:
    samples: list[Sample] = field(default_factory=list)

    def since(self, start: float) -> list[Sample]:
        return [s for s in self.samples if s.at >= start]


async def one_request(host: str, port: int, seq: int) -> Sample:
    started = time.monotonic()
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port), REQUEST_TIMEOUT
        )
        try:
            writer.write(f"ping {seq}\n".encode())
            await writer.drain()
            line = await asyncio.wait_for(reader.readline(), REQUEST_TIMEOUT)
        finally:
            writer.close()
        cluster, _, echoed = line.decode(errors="replace").strip().partition(" ")
        if echoed != f"ping {seq}":
            return Sample(started, None, f"bad reply {line!r}")
        return Sample(started, cluster)
    except (OSError, TimeoutError) as exc:
        return Sample(started, None, type(exc).__name__)


async def steady(
    host: str, port: int, rate: float, recorder: Recorder, stop: asyncio.Event
) -> None:
    """Issue `rate` requests per second until `stop` is set; record every outcome."""
    seq = 0
    interval = 1.0 / rate
    pending: set[asyncio.Task[None]] = set()

    async def run(n: int) -> None:
        recorder.samples.append(await one_request(host, port, n))

    next_at = time.monotonic()
    while not stop.is_set():
        task = asyncio.create_task(run(seq))
        pending.add(task)
        task.add_done_callback(pending.discard)
        seq += 1
        next_at += interval
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))
    if pending:
        await asyncio.gather(*pending)


def served_counts(samples: list[Sample]) -> dict[str, int]:
    counts = Counter(s.served_by or "FAILED" for s in samples)
    return dict(sorted(counts.items()))


def first_served_by(samples: list[Sample], cluster: str, after: float) -> float | None:
    """Seconds from `after` until the first request (sent after it) served by `cluster`."""
    times = [s.at for s in samples if s.at >= after and s.served_by == cluster]
    return min(times) - after if times else None
