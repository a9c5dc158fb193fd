"""The control plane's knobs, with where each default comes from.

Tests shorten the times (a 1 s lease, a 0.2 s heartbeat); production keeps the
defaults. Kept apart from the server so the pure modules can name them too.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Issue 4 / DESIGN "What stays up": a vanished agent's endpoints expire. 15 s is
# three missed keepalives at etcd's customary TTL/3 cadence, and well under the
# time a Kubernetes EndpointSlice takes to notice a dead node (40 s).
DEFAULT_LEASE_TTL = 15.0
# etcd clients renew leases at a third of their TTL (etcd clientv3 keepAlive).
KEEPALIVE_FRACTION = 1 / 3
# Issue 4: "heartbeats (e.g. every 5 s with the current revision)".
DEFAULT_HEARTBEAT = 5.0
# A resuming Watch reads the store's history up to the revision of its state
# listing; if that revision carries no meshfed event (an etcd shared with other
# applications) the history never reaches it, and after this long the watcher
# gets a fresh snapshot instead (always correct, just larger).
DEFAULT_CATCHUP_TIMEOUT = 2.0
# gRPC keepalive (grpc.io/docs/guides/keepalive): ping an idle connection every
# 10 s and drop it if the ping is not answered in 5 s, so a vanished agent's
# stream ends (and its lease stops being renewed) within about one lease TTL.
KEEPALIVE_TIME_MS = 10_000
KEEPALIVE_TIMEOUT_MS = 5_000
# Clients may ping every 5 s without data (gRPC's server default rejects more
# often than every 5 min with GOAWAY "too_many_pings").
MIN_CLIENT_PING_INTERVAL_MS = 5_000
# Largest message accepted: a full-state report of 1,000 services x 10 endpoints is
# about 1 MiB; 16 MiB leaves room for the largest clusters (gRPC's default is 4 MiB).
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
# The registry's serving certificate is renewed at half its lifetime (the
# rotation point trust_bundle.renewal uses for SVIDs).
SERVER_CERT_RENEW_FRACTION = 0.5


@dataclass(frozen=True, slots=True)
class Settings:
    """How one control plane behaves; the defaults are for production."""

    lease_ttl: float = DEFAULT_LEASE_TTL
    heartbeat: float = DEFAULT_HEARTBEAT
    catchup_timeout: float = DEFAULT_CATCHUP_TIMEOUT
    # The Join listener (server TLS only). None: the mTLS port + 1 (9472 by default).
    join_listen: str | None = None
    # Names the serving certificate carries besides the listen host.
    server_names: tuple[str, ...] = field(default=("localhost",))
    # How often the server checks the trust bundle and its issuing CA for a root
    # rotation step: well inside the rotation's 3 x refresh-hint window (5 min hint).
    trust_check: float = 10.0

    def __post_init__(self) -> None:
        for name in ("lease_ttl", "heartbeat", "catchup_timeout", "trust_check"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")

    @property
    def keepalive_interval(self) -> float:
        return self.lease_ttl * KEEPALIVE_FRACTION
