"""The agent's admin HTTP endpoint (`--admin-address 0.0.0.0:9474`): /healthz, /readyz, /metrics.

Why it exists: kubelet probes and Prometheus scrapes need a plain HTTP port. Three
GET routes over HTTP/1.1 with `Connection: close` do not justify a web framework
(FastAPI belongs to the dashboard API), so this is a minimal asyncio server that
reads one bounded request head and answers it, like the gateway's admin port.

The decisions are pure functions of a frozen `Snapshot` of the agent's state
(`liveness`, `readiness`, `collect_metrics`); `snapshot(agent)` is the one place that
reads the live `Agent`, and the server only renders what they return:

- `/healthz`: 200 while every task of the agent is still running (a task only ends
  by failing, and then the process exits). An event loop that is blocked cannot
  answer at all, which is the other thing a liveness probe should catch.
- `/readyz`: 200 when the agent has joined the registry, its source has completed
  its initial list, and, with leader election, it leads or is a healthy standby
  (it sees the Lease change, i.e. a live leader renew it, within a lease duration
  plus a retry period). Otherwise 503 with one `check: reason` line per failing check.
- `/metrics`: Prometheus text format 0.0.4 (the agent's series and, with leader
  election, the elector's own registry).

Anything else is answered 400 (bad request line or header, head over 8 KiB), 404
(unknown path) or 405 (not GET) with a one-line reason, the connection is closed,
and `meshfed_agent_admin_rejected_requests_total{code}` counts it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from discovery_sync.errors import DiscoveryError
from discovery_sync.kube.lease import lease_name
from federation.client.rotation import issuing_root

if TYPE_CHECKING:
    from discovery_sync.agent import Agent

DEFAULT_PORT: Final = 9474
MAX_HEAD: Final = 8192  # request head limit (the order of common servers' defaults)
READ_TIMEOUT: Final = 5.0
LINGER_SECONDS: Final = 1.0  # after answering: wait this long for the client to close
LINGER_BYTES: Final = 65536  # and discard at most this much of what it still sends
PROMETHEUS_TEXT: Final = "text/plain; version=0.0.4; charset=utf-8"  # exposition format 0.0.4
REJECTED_CODES: Final = (400, 404, 405)
_REQUEST_LINE = re.compile(r"([!#$%&'*+.^_`|~0-9A-Za-z-]+) (/\S*) HTTP/1\.[01]")
_REASONS: Final = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    500: "Internal Server Error",
    503: "Service Unavailable",
}

log = logging.getLogger("meshfed.agent.admin")


class AdminError(DiscoveryError):
    """The admin endpoint could not start (address in use, not permitted)."""


# --- the state: a frozen snapshot and pure decisions over it ---------------------------


@dataclass(frozen=True, slots=True)
class Election:
    """This replica's view of leader election at one instant."""

    lease: str  # namespace/name
    identity: str
    leading: bool  # holds the Lease and its renew deadline is ahead
    holder: str  # holderIdentity last read ("" if none or not read)
    read: bool  # the Lease (or its absence) has been read at least once
    unchanged_for: float  # seconds since the Lease record last changed, as seen here
    stale_after: float  # lease duration + retry period: a live leader renews well within


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What the admin endpoint knows of the agent; every field is read off real state."""

    source: str = "static file"  # what the initial list comes from, for the reason line
    stopped: tuple[str, ...] = ()  # names of agent tasks that have ended
    joined: bool = False  # the join succeeded: the agent holds an SVID
    source_listed: bool = False  # the source published its first full state
    election: Election | None = None  # None: leader election off
    source_services: int = 0  # services the source currently offers for export
    exported_services: int = 0  # services sent on the open export stream
    imported_services: int = 0  # services in the current import view
    import_revision: int = 0  # registry revision of the current import view
    views_applied: int = 0
    export_stream_up: bool = False
    export_stream_restarts: int = 0
    svid_expiry: float | None = None  # SVID notAfter, Unix seconds; None before the join
    svid_root: str = ""  # SHA-256 of the root the SVID chains to ("" unknown / not joined)
    svid_renewals: int = 0


def liveness(s: Snapshot) -> list[str]:
    """Why the agent is not alive (empty: alive)."""
    return [f"loop: task {name!r} has ended" for name in s.stopped]


def leadership_problem(e: Election) -> str | None:
    """None when this replica leads or is a healthy standby, else why not."""
    if e.leading:
        return None
    if not e.read:
        return f"lease {e.lease} not read yet"
    if e.unchanged_for < e.stale_after:
        return None  # a live leader renews it (or we are about to take it)
    held = f"held by {e.holder!r}" if e.holder else "free"
    return (
        f"lease {e.lease} ({held}) unchanged for {e.unchanged_for:.0f}s "
        f"(> {e.stale_after:g}s): no live leader seen and this replica has not taken over"
    )


def readiness(s: Snapshot) -> list[str]:
    """One `check: reason` line per failing readiness check (empty: ready).

    Leader election is not one of them: the `meshfed-dns` Service selects the agent
    pods, and a replica serves DNS from its view whether or not it leads, so a Lease
    that cannot be renewed (an API server outage) must not empty the Service.
    `meshfed_agent_leader_election_healthy` carries it for alerting instead."""
    problems = liveness(s)
    if not s.joined:
        problems.append("registry: not joined yet")
    if not s.source_listed:
        problems.append(f"source: initial list of the {s.source} not complete")
    return problems


def collect_metrics(s: Snapshot, rejected: Mapping[int, int]) -> list[Metric]:
    """The agent's series (names follow the Prometheus conventions: units, _total)."""

    def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
        return GaugeMetricFamily(f"meshfed_agent_{name}", doc, value=value)

    def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
        return CounterMetricFamily(f"meshfed_agent_{name}", doc, value=value)

    out: list[Metric] = [
        gauge("ready", "1 when /readyz answers 200, else 0.", not readiness(s)),
        gauge("registry_joined", "1 once the agent joined the registry (holds an SVID).", s.joined),
        gauge("source_listed", "1 once the source completed its initial list.", s.source_listed),
        gauge("source_services", "Services the local source offers for export.", s.source_services),
        gauge(
            "exported_services",
            "Services sent to the registry on the open export stream.",
            s.exported_services,
        ),
        gauge(
            "export_stream_up",
            "1 while an export stream (ReportEndpoints) is open and has sent its full state.",
            s.export_stream_up,
        ),
        counter(
            "export_stream_restarts",
            "Export streams that ended in an error; each is followed by a new full state.",
            s.export_stream_restarts,
        ),
        gauge("imported_services", "Services in the current import view.", s.imported_services),
        gauge(
            "import_revision", "Registry revision of the current import view.", s.import_revision
        ),
        counter("import_views", "Import views applied to the sinks and DNS.", s.views_applied),
    ]
    if s.election is not None:
        out.append(
            gauge(
                "leader_election_healthy",
                "1 when this replica leads or sees a live leader renew the Lease.",
                leadership_problem(s.election) is None,
            )
        )
    if s.election is None:  # the only replica writes; with election the elector's series
        out.append(gauge("leader", "1: this replica writes (leader election off).", 1))
    if s.svid_expiry is not None:
        out.append(
            gauge(
                "svid_expiry_timestamp_seconds",
                "When the agent's current SVID expires (Unix time); renewed at half-life.",
                s.svid_expiry,
            )
        )
        info = GaugeMetricFamily(
            "meshfed_agent_svid_info",
            "The agent's SVID: the root it chains to (a root rotation moves it at activate).",
            labels=["root_sha256"],
        )
        info.add_metric([s.svid_root], 1)
        out.append(info)
    out.append(
        counter("svid_renewals", "SVID renewals (half lifetime or root rotation).", s.svid_renewals)
    )
    bad = CounterMetricFamily(
        "meshfed_agent_admin_rejected_requests",
        "Admin endpoint requests answered 400, 404 or 405.",
        labels=["code"],
    )
    for code in sorted({*REJECTED_CODES, *rejected}):
        bad.add_metric([str(code)], rejected.get(code, 0))
    out.append(bad)
    return out


def snapshot(agent: Agent, clock: Callable[[], float] = time.monotonic) -> Snapshot:
    """Read the live agent once (the only impure step)."""
    cfg = agent.config
    election = None
    if agent.elector is not None:
        el = agent.elector
        state, timing = el.state, el.timing
        election = Election(
            lease=el.describe,
            identity=el.identity,
            leading=el.is_leader(),
            holder=state.leader,
            read=state.observed_at > -math.inf,
            unchanged_for=max(0.0, el.clock() - state.observed_at),
            stale_after=timing.lease_duration + timing.retry_period,
        )
    elif cfg.leader_elect and cfg.static_file is None:  # the elector starts with run()
        timing = cfg.lease_timing
        election = Election(
            lease=f"{cfg.lease_namespace}/{lease_name(cfg.cluster)}",
            identity=cfg.identity,
            leading=False,
            holder="",
            read=False,
            unchanged_for=0.0,
            stale_after=timing.lease_duration + timing.retry_period,
        )
    registry = agent.registry
    view = agent.view
    exports = agent.exports.value
    return Snapshot(
        source="static file" if cfg.static_file is not None else "Kubernetes informers",
        stopped=tuple(t.get_name() for t in agent.tasks if t.done()),
        joined=registry is not None,
        source_listed=agent.exports.version > 0,
        election=election,
        source_services=len(exports) if exports is not None else 0,
        exported_services=len(agent.reported),
        imported_services=len(view.services) if view is not None else 0,
        import_revision=view.revision if view is not None else 0,
        views_applied=agent.views_applied,
        export_stream_up=agent.export_stream_up,
        export_stream_restarts=agent.export_stream_restarts,
        svid_expiry=registry.identity.not_after.timestamp() if registry is not None else None,
        svid_root=(issuing_root(registry.identity) or "") if registry is not None else "",
        svid_renewals=agent.renewals,
    )


# --- the HTTP shell ---------------------------------------------------------------------


class _Collector(Collector):
    def __init__(self, server: AdminServer) -> None:
        self.server = server

    def collect(self) -> Iterable[Metric]:
        return collect_metrics(self.server.state(), self.server.rejected)


class _Rejected(AdminError):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class AdminServer:
    """Serves `state()` (a `Snapshot`) and, if given, extra Prometheus registries."""

    def __init__(
        self,
        state: Callable[[], Snapshot],
        extra_metrics: Callable[[], Iterable[CollectorRegistry]] = tuple,
    ) -> None:
        self.state = state
        self.extra_metrics = extra_metrics
        self.rejected: Counter[int] = Counter()
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Collector(self))
        self._server: asyncio.Server | None = None

    @classmethod
    def for_agent(cls, agent: Agent) -> AdminServer:
        def elector_metrics() -> Iterable[CollectorRegistry]:
            if agent.elector is None:
                return ()
            return (agent.elector.metrics.registry,)

        return cls(lambda: snapshot(agent), elector_metrics)

    @property
    def address(self) -> tuple[str, int]:
        assert self._server is not None
        host, port = self._server.sockets[0].getsockname()[:2]
        return str(host), int(port)

    async def start(self, host: str, port: int) -> None:
        try:
            self._server = await asyncio.start_server(
                self._handle, host, port, limit=MAX_HEAD, reuse_address=True
            )
        except OSError as err:
            shown = f"[{host}]" if ":" in host else host
            raise AdminError(
                f"--admin-address: cannot bind {shown}:{port}: {err.strerror or err}"
            ) from err

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    # --- one connection: read a head, answer, close --------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                method, path = await self._read_head(reader)
                code, ctype, body = self._route(method, path)
            except _Silent:
                return  # the client went away without sending anything (a TCP probe)
            except _Rejected as rejected:
                self.rejected[rejected.code] += 1
                code, ctype, body = rejected.code, "text/plain", f"{rejected.reason}\n".encode()
            except Exception:  # a bug must not reach the client as a traceback
                log.exception("admin endpoint: request failed")
                code, ctype, body = 500, "text/plain", b"internal error\n"
            head = (
                f"HTTP/1.1 {code} {_REASONS[code]}\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n"
            )
            if code == 405:
                head += "Allow: GET\r\n"
            writer.write(f"{head}\r\n".encode("latin-1") + body)
            with contextlib.suppress(OSError):
                await writer.drain()
                await _linger(reader, writer)
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def _read_head(self, reader: asyncio.StreamReader) -> tuple[str, str]:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT)
        except asyncio.LimitOverrunError:
            raise _Rejected(400, f"request head over {MAX_HEAD} bytes") from None
        except asyncio.IncompleteReadError as err:
            if not err.partial:
                raise _Silent from None
            raise _Rejected(400, "incomplete request head") from None
        except TimeoutError:
            raise _Rejected(400, f"no complete request head in {READ_TIMEOUT:g}s") from None
        except OSError:
            raise _Silent from None
        if len(head) > MAX_HEAD:
            raise _Rejected(400, f"request head over {MAX_HEAD} bytes")
        line, *fields = head[:-4].decode("latin-1").split("\r\n")
        match = _REQUEST_LINE.fullmatch(line)
        if match is None:
            raise _Rejected(400, "malformed request line (want: GET /path HTTP/1.1)")
        for field in fields:
            name, sep, _ = field.partition(":")
            if not sep or not name or name != name.strip():
                raise _Rejected(400, "malformed header line")
        return match.group(1), match.group(2).split("?", 1)[0]

    def _route(self, method: str, path: str) -> tuple[int, str, bytes]:
        if path not in ("/healthz", "/readyz", "/metrics"):
            raise _Rejected(404, f"no such path {path[:100]!r}; try /healthz, /readyz, /metrics")
        if method != "GET":
            raise _Rejected(405, f"method {method[:20]} not allowed; GET only")
        if path == "/metrics":
            body = generate_latest(self.registry)
            for extra in self.extra_metrics():
                body += generate_latest(extra)
            return 200, PROMETHEUS_TEXT, body
        state = self.state()
        problems = liveness(state) if path == "/healthz" else readiness(state)
        if problems:
            return 503, "text/plain", "".join(f"{p}\n" for p in problems).encode()
        return 200, "text/plain", b"ok\n"


class _Silent(AdminError):
    """Close the connection without an answer."""


async def _linger(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Half-close, then discard what the client still sends until it closes (bounded).

    Closing a socket with unread input (the rest of an oversize head) makes the
    kernel send RST, and the client may lose the answer already sent.
    """
    if writer.can_write_eof():
        writer.write_eof()
    loop = asyncio.get_running_loop()
    deadline, left = loop.time() + LINGER_SECONDS, LINGER_BYTES
    while left > 0:
        try:
            chunk = await asyncio.wait_for(reader.read(left), deadline - loop.time())
        except TimeoutError:
            return
        if not chunk:
            return
        left -= len(chunk)
