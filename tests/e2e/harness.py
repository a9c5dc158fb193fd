"""The federation under test: a registry and three clusters in network namespaces.

Modelled on `meshfed demo` (federation/cli/demo): every component is a real `meshfed`
process (`serve`, `agent --static`, `gateway --registry`) started with
`ip netns exec`, talking over real sockets and mTLS; the workload is the demo's echo
server; the load client is the demo's request shape (one request per new connection,
so every request goes through the egress ranker) run on a thread inside cluster `a`.

Clusters (issue 9): `a` us-east/zone-1 (the caller), `b` us-east/zone-2 and `c`
eu-west/zone-1 (both export demo/echo). Links: full mesh, terminating mTLS.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.e2e.netns import ADDRESSES, Net, enter

ROOT = Path(__file__).resolve().parents[2]
NAMESPACE, SERVICE = "demo", "echo"
SERVICE_PORT = 8080  # the service port; a's egress listener for it (offset 0)
ECHO_PORT = 9000
GATEWAY_PORT = 15443
ADMIN_PORT = 15021
DNS_PORT = 5353
API_PORT, GRPC_PORT = 9470, 9471
READY_TIMEOUT = 60.0  # a component coming up (cold imports on 2 cores)
# A client's request timeout. Real clients wait far longer than a gateway's 5 s
# connect timeout; the demo's 3 s would count a slow-but-served request as lost.
REQUEST_TIMEOUT = 10.0
MARKER = "e2e-plaintext-canary-7f3a9c"  # in every request; must never be seen on a wire

LOCALITY = {"a": ("us-east", "zone-1"), "b": ("us-east", "zone-2"), "c": ("eu-west", "zone-1")}
EXPORTERS = ("b", "c")


class E2EError(AssertionError):
    """A harness step failed; the message names it and shows the component's log."""


def trust_domain(cluster: str) -> str:
    return f"{cluster}.e2e.meshfed"


def static_source(cluster: str) -> str:
    if cluster not in EXPORTERS:
        return "services: []\n"
    zone = LOCALITY[cluster][1]
    return (
        "services:\n"
        f"  - namespace: {NAMESPACE}\n"
        f"    name: {SERVICE}\n"
        f"    ports: [{{name: tcp-echo, port: {SERVICE_PORT}, protocol: TCP}}]\n"
        "    endpoints:\n"
        f"      - {{address: {ADDRESSES[cluster]}, port: {ECHO_PORT}, zone: {zone},"
        " ready: true}\n"
    )


# --------------------------------------------------------------------------- processes


@dataclass
class Proc:
    name: str
    argv: list[str]
    log: Path
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> Proc:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as out:
            out.write(f"\n=== start {time.strftime('%H:%M:%S')}: {' '.join(self.argv)}\n".encode())
            out.flush()
            self.process = subprocess.Popen(
                self.argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                cwd=ROOT,
                env={
                    **os.environ,
                    "PYTHONUNBUFFERED": "1",
                    "PYTHONPATH": str(ROOT),
                    **self.env,
                },
            )
        return self

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, sig: signal.Signals) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(sig)

    def kill(self) -> None:
        """SIGKILL (a crash) and reap."""
        self.signal(signal.SIGKILL)
        if self.process is not None:
            self.process.wait()

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM (drain), SIGKILL after `grace`."""
        if self.process is None:
            return
        self.signal(signal.SIGTERM)
        try:
            self.process.wait(grace)
        except subprocess.TimeoutExpired:
            self.kill()

    def tail(self, lines: int = 25) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def wait_until(
    what: str, probe: Callable[[], bool], timeout: float, proc: Proc | None = None
) -> float:
    """Poll `probe` until true; returns the seconds it took. E2EError otherwise."""
    start = time.monotonic()
    while True:
        if proc is not None and not proc.running:
            raise E2EError(f"{what}: {proc.name} exited; its log:\n{proc.tail()}")
        with contextlib.suppress(Exception):
            if probe():
                return time.monotonic() - start
        if time.monotonic() - start > timeout:
            log = f"; {proc.name}'s log:\n{proc.tail()}" if proc else ""
            raise E2EError(f"{what}: not done after {timeout:.0f} s{log}")
        time.sleep(0.1)


# --------------------------------------------------------------------------- requests


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


# --------------------------------------------------------------------------- federation


class Federation:
    """Registry in `reg`, clusters `a`, `b`, `c`; every process logged under workdir."""

    def __init__(self, net: Net, workdir: Path, store_url: str | None = None) -> None:
        self.net = net
        self.workdir = workdir
        self.store_url = store_url
        self.procs: dict[str, Proc] = {}
        self.http: httpx.Client | None = None
        self.token_file = workdir / "registry" / "admin.token"

    # -- processes
    def spawn(
        self, name: str, node: str, argv: list[str], env: dict[str, str] | None = None
    ) -> Proc:
        old = self.procs.get(name)
        if old is not None and old.running:
            raise E2EError(f"{name} is already running")
        full = self.net.exec_argv(node, [sys.executable, *argv])
        proc = Proc(name, full, self.workdir / "logs" / f"{name}.log", env or {})
        self.procs[name] = proc.start()
        return proc

    def meshfed(self, node: str, *args: str) -> list[str]:
        return ["-m", "federation.cli", *args]

    @property
    def registry_addr(self) -> str:
        return ADDRESSES["reg"]

    @property
    def api(self) -> str:
        return f"http://{self.registry_addr}:{API_PORT}"

    def call(self, method: str, path: str, body: Any = None) -> httpx.Response:
        """A REST call to the registry, made from inside its namespace."""

        def go() -> httpx.Response:
            if self.http is None:
                self.http = httpx.Client(base_url=self.api, timeout=10)
            return self.http.request(method, path, json=body)

        return self.net.thread("reg").call(go)

    def expect(self, method: str, path: str, status: int, body: Any = None) -> Any:
        r = self.call(method, path, body)
        if r.status_code != status:
            raise E2EError(f"{method} {path}: HTTP {r.status_code}: {r.text[:300]}")
        return r.json() if r.content else None

    def start_registry(self) -> Proc:
        argv = self.meshfed("reg", "serve", "--data-dir", str(self.workdir / "registry"),
                            "--api", f"{self.registry_addr}:{API_PORT}",
                            "--grpc", f"{self.registry_addr}:{GRPC_PORT}")  # fmt: skip
        if self.store_url:
            argv += ["--store", self.store_url]
        proc = self.spawn("registry", "reg", argv)
        if self.http is not None:
            http, self.http = self.http, None
            self.net.thread("reg").call(http.close)
        wait_until(
            "registry ready",
            lambda: self.call("GET", "/readyz").status_code == 200,
            READY_TIMEOUT,
            proc,
        )
        token = self.token_file.read_text().strip()

        def auth() -> None:
            assert self.http is not None
            self.http.headers["Authorization"] = f"Bearer {token}"

        self.net.thread("reg").call(auth)
        return proc

    def register(self) -> None:
        for name, (region, zone) in LOCALITY.items():
            body = {"name": name, "region": region, "zone": zone,
                    "trust_domain": trust_domain(name),
                    "gateway_addresses": [f"{ADDRESSES[name]}:{GATEWAY_PORT}"]}  # fmt: skip
            self.expect("POST", "/api/v1/clusters", 201, body)
        names = list(LOCALITY)
        for i, x in enumerate(names):
            for y in names[i + 1 :]:
                link = {"a": x, "b": y, "bidirectional": True, "mode": "terminating"}
                self.expect("POST", "/api/v1/links", 201, link)
        roots = self.call("GET", "/api/v1/trust/roots.pem")
        (self.workdir / "roots.pem").write_bytes(roots.content)

    def join_token(self, cluster: str) -> str:
        token: str = self.expect("POST", f"/api/v1/clusters/{cluster}/join-tokens", 201, {})[
            "token"
        ]
        return token

    def common(self, cluster: str) -> list[str]:
        region, zone = LOCALITY[cluster]
        return ["--cluster", cluster, "--registry", f"{self.registry_addr}:{GRPC_PORT}",
                "--join-token", self.join_token(cluster), "--trust-domain", trust_domain(cluster),
                "--registry-ca", str(self.workdir / "roots.pem"),
                "--region", region, "--zone", zone]  # fmt: skip

    def home(self, cluster: str) -> Path:
        path = self.workdir / cluster
        path.mkdir(parents=True, exist_ok=True)
        return path

    def start_echo(self, cluster: str) -> Proc:
        argv = ["-m", "tests.e2e.echo_main", cluster, ADDRESSES[cluster], str(ECHO_PORT)]
        return self.spawn(f"echo-{cluster}", cluster, argv)

    def start_agent(self, cluster: str) -> Proc:
        home = self.home(cluster)
        static = home / "services.yaml"
        if not static.exists():
            static.write_text(static_source(cluster))
        argv = self.meshfed(cluster, "agent", *self.common(cluster), "--static", str(static),
                            "--imports-file", str(home / "imports.yaml"),
                            "--egress-address", ADDRESSES[cluster],
                            "--dns", f"{ADDRESSES[cluster]}:{DNS_PORT}")  # fmt: skip
        return self.spawn(f"agent-{cluster}", cluster, argv)

    def start_gateway(self, cluster: str) -> Proc:
        """Start (or restart: same state dir, saved SVID, the token is not spent)."""
        home = self.home(cluster)
        addr = ADDRESSES[cluster]
        argv = self.meshfed(cluster, "gateway", *self.common(cluster),
                            "--state-dir", str(home / "gateway"), "--egress-address", addr,
                            "--egress-port-offset", "0", "--listen", f"{addr}:{GATEWAY_PORT}",
                            "--admin", f"{addr}:{ADMIN_PORT}")  # fmt: skip
        return self.spawn(f"gateway-{cluster}", cluster, argv)

    def start(self) -> None:
        self.start_registry()
        self.register()
        for cluster in LOCALITY:
            if cluster in EXPORTERS:
                self.start_echo(cluster)
            self.start_agent(cluster)
            self.start_gateway(cluster)
        self.wait_egress("a", {"b", "c"})
        self.wait_request("a", "b")

    def close(self) -> None:
        for proc in reversed(list(self.procs.values())):
            proc.stop(grace=5)
        if self.http is not None:
            with contextlib.suppress(Exception):
                self.net.thread("reg").call(self.http.close)

    # -- observation
    def admin_get(self, cluster: str, path: str) -> str:
        url = f"http://{ADDRESSES[cluster]}:{ADMIN_PORT}{path}"

        def go() -> str:
            with urllib.request.urlopen(url, timeout=3) as r:
                return str(r.read().decode())

        return self.net.thread(cluster).call(go)

    def egress_clusters(self, cluster: str) -> dict[str, dict[str, Any]]:
        """Candidate clusters of `cluster`'s egress listener for the echo service."""
        config = json.loads(self.admin_get(cluster, "/config"))
        for e in config.get("egress", []):
            if e["listen"].endswith(f":{SERVICE_PORT}"):
                return {c["name"]: c for c in e.get("clusters", [])}
        return {}

    def wait_egress(self, cluster: str, want: set[str], timeout: float = READY_TIMEOUT) -> float:
        return wait_until(
            f"{cluster}'s egress for {NAMESPACE}/{SERVICE} lists exactly {sorted(want)}",
            lambda: set(self.egress_clusters(cluster)) == want,
            timeout,
            self.procs[f"gateway-{cluster}"],
        )

    def metrics(self, cluster: str) -> dict[str, float]:
        """`cluster`'s gateway metrics as {'name{labels}': value} (samples only)."""
        out: dict[str, float] = {}
        for line in self.admin_get(cluster, "/metrics").splitlines():
            if line and not line.startswith("#"):
                key, _, value = line.rpartition(" ")
                with contextlib.suppress(ValueError):
                    out[key] = float(value)
        return out

    def request(self, cluster: str, seq: int = 0) -> Sample:
        host = ADDRESSES[cluster]
        return self.net.thread(cluster).call(
            lambda: asyncio.run(one_request(host, SERVICE_PORT, seq))
        )

    def wait_request(self, cluster: str, served_by: str, timeout: float = READY_TIMEOUT) -> float:
        return wait_until(
            f"a request from {cluster} served by {served_by}",
            lambda: self.request(cluster).served_by == served_by,
            timeout,
        )

    def load(self, cluster: str = "a", rate: float = 20.0) -> Load:
        return Load(self.net.ns(cluster), ADDRESSES[cluster], SERVICE_PORT, rate)

    def check(self) -> tuple[int, str]:
        """`meshfed check` as an operator runs it next to the registry."""
        argv = self.net.exec_argv("reg", [sys.executable, "-m", "federation.cli", "check"])
        env = {**os.environ, "MESHFED_REGISTRY": self.api,
               "MESHFED_TOKEN_FILE": str(self.token_file), "PYTHONPATH": str(ROOT)}  # fmt: skip
        done = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, env=env, timeout=60)
        return done.returncode, done.stdout + done.stderr

    def link(self, x: str, y: str) -> dict[str, Any]:
        for link in self.expect("GET", "/api/v1/links", 200)["items"]:
            if {link["a"], link["b"]} == {x, y}:
                return dict(link)
        raise E2EError(f"no link {x}<->{y}")

    def endpoint_clusters(self) -> set[str]:
        """Clusters the registry holds ready endpoints of demo/echo for."""
        r = self.call("GET", f"/api/v1/services/{NAMESPACE}/{SERVICE}")
        if r.status_code == 404:
            return set()
        health = r.json().get("health", {})
        return {c for c, h in health.items() if h.get("ready", 0) > 0}


# --------------------------------------------------------------------------- capture

ETH_P_ALL = 0x0003


@dataclass(frozen=True, slots=True)
class Segment:
    src: tuple[str, int]
    dst: tuple[str, int]
    payload: bytes


class Capture:
    """A raw AF_PACKET capture of one interface in one namespace (no tcpdump needed)."""

    def __init__(self, ns: str, ifname: str) -> None:
        self.ns, self.ifname = ns, ifname
        self.frames: list[bytes] = []
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.error: BaseException | None = None

    def __enter__(self) -> Capture:
        self._thread.start()
        if not self._ready.wait(5):
            raise E2EError(f"capture on {self.ns}/{self.ifname} did not start: {self.error!r}")
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        try:
            enter(self.ns)
            with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL)) as s:
                s.bind((self.ifname, 0))
                s.settimeout(0.2)
                self._ready.set()
                while not self._stop.is_set():
                    with contextlib.suppress(TimeoutError):
                        self.frames.append(s.recv(65535))
        except BaseException as exc:
            self.error = exc
            self._ready.set()

    def tcp_segments(self) -> list[Segment]:
        out = []
        for f in self.frames:
            if len(f) < 34 or f[12:14] != b"\x08\x00":
                continue
            ip = f[14:]
            ihl = (ip[0] & 0x0F) * 4
            total = struct.unpack("!H", ip[2:4])[0]
            if ip[9] != 6:
                continue
            src, dst = socket.inet_ntoa(ip[12:16]), socket.inet_ntoa(ip[16:20])
            tcp = ip[ihl:total]
            sport, dport = struct.unpack("!HH", tcp[:4])
            offset = (tcp[12] >> 4) * 4
            out.append(Segment((src, sport), (dst, dport), bytes(tcp[offset:])))
        return out


def tls_records(stream: bytes) -> tuple[list[int], bytes]:
    """Split a TCP byte stream into TLS records: (content types, bytes that are not TLS)."""
    types: list[int] = []
    i = 0
    while i + 5 <= len(stream):
        ctype, major = stream[i], stream[i + 1]
        length = struct.unpack("!H", stream[i + 3 : i + 5])[0]
        if ctype not in (20, 21, 22, 23) or major != 3:
            return types, stream[i:]
        types.append(ctype)
        i += 5 + length
    return types, b""  # a record cut by the end of the capture is still TLS


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q * 100) - 1]
