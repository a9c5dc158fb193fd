"""Retry delays: exponential with full jitter (pure; the caller sleeps).

Full jitter (a random delay between 0 and the exponential cap) spreads the
reconnects of many agents after a registry or API server restart, instead of
having them all retry in lockstep (the AWS architecture blog's analysis of
backoff strategies; client-go's wait.Backoff has the same shape).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class Backoff:
    initial: float = 0.1
    maximum: float = 10.0
    factor: float = 2.0
    rng: random.Random = field(default_factory=random.Random)
    attempt: int = 0

    def next(self) -> float:
        """The next delay; grows until `reset`."""
        cap = min(self.maximum, self.initial * self.factor**self.attempt)
        self.attempt += 1
        return self.initial / 2 + self.rng.uniform(0, cap - self.initial / 2)

    def reset(self) -> None:
        self.attempt = 0


def jittered(period: float, rng: random.Random, spread: float = 0.2) -> float:
    """`period` +/- `spread` (fraction), for periodic resyncs that should not align."""
    return period * (1 + rng.uniform(-spread, spread))
