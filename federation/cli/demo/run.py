"""`meshfed demo`: the whole federation on one machine, driven like an operator would.

A registry (`meshfed serve`, embedded SQLite in a temporary data dir), three
clusters on loopback each with an agent (static source) and a gateway, an echo
service exported from east2 and west, and steady traffic from east. It shows
traffic at the nearest cluster, stops east2's gateway to show failover to west,
restores it and shows traffic return, then prints a summary. Every component is
a real `meshfed` process talking over real sockets and mTLS.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

from federation.cli.demo import topology as topo
from federation.cli.demo.echo import start_echo
from federation.cli.demo.procs import Child, Children, DemoError, wait_until
from federation.cli.demo.traffic import (
    Recorder,
    Sample,
    first_served_by,
    one_request,
    served_counts,
    steady,
)

READY_TIMEOUT = 60.0  # seconds for a component to come up (cold Python imports on 2 cores)
RETURN_TIMEOUT = 60.0  # traffic must return to east2 within this after its gateway is back


@dataclass(frozen=True)
class DemoOptions:
    keep_running: bool = False
    summary_json: Path | None = None
    rate: float = 20.0  # requests per second from east
    phase_seconds: float = 5.0


@dataclass
class Summary:
    ok: bool = False
    requests: int = 0
    failed: int = 0
    served_by: dict[str, int] = field(default_factory=dict)
    failover_seconds: float | None = None
    return_seconds: float | None = None
    dashboard: str = ""
    token_path: str = ""
    workdir: str = ""
    error: str = ""


def free_port(host: str = "127.0.0.1", pair: bool = False) -> int:
    """A free TCP port (and, with `pair`, its successor too: the registry's join port)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind((host, 0))
            port: int = s.getsockname()[1]
        if not pair:
            return port
        with socket.socket() as s2:
            try:
                s2.bind((host, port + 1))
            except OSError:
                continue
            return port
    raise DemoError("no free port pair on 127.0.0.1")


class Demo:
    def __init__(self, options: DemoOptions, say: Callable[[str], None]) -> None:
        self.options = options
        self.say = say
        self.workdir = Path(tempfile.mkdtemp(prefix="meshfed-demo-"))
        self.children = Children(self.workdir)
        self.summary = Summary(workdir=str(self.workdir))
        self.api_port = free_port()
        self.grpc_port = free_port(pair=True)
        self.gateways: dict[str, Child] = {}
        self.echo_servers: list[asyncio.Server] = []

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def step(self, text: str) -> None:
        self.say(f"\u221a {text}")

    async def start_registry(self) -> httpx.AsyncClient:
        data = self.workdir / "registry"
        child = self.children.start(
            "registry",
            ["serve", "--data-dir", str(data), "--api", f"127.0.0.1:{self.api_port}",
             "--grpc", f"127.0.0.1:{self.grpc_port}"],
        )  # fmt: skip
        client = httpx.AsyncClient(base_url=self.api, timeout=10)

        async def ready() -> bool:
            return (await client.get("/readyz")).status_code == 200

        await wait_until("registry ready", ready, READY_TIMEOUT, child)
        token_path = data / "admin.token"
        client.headers["Authorization"] = f"Bearer {token_path.read_text().strip()}"
        self.summary.dashboard = f"{self.api}/api/v1/topology"
        self.summary.token_path = str(token_path)
        self.step(f"registry on {self.api} (embedded SQLite; admin token: {token_path})")
        return client

    async def register(self, client: httpx.AsyncClient) -> None:
        for c in topo.CLUSTERS:
            body: dict[str, object] = {"name": c.name, "region": c.region, "zone": c.zone,
                    "trust_domain": c.trust_domain, "gateway_addresses": [c.gateway]}  # fmt: skip
            _expect(await client.post("/api/v1/clusters", json=body), 201, f"create {c.name}")
        names = [c.name for c in topo.CLUSTERS]
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                link = {"a": a, "b": b, "bidirectional": True, "mode": "terminating"}
                _expect(await client.post("/api/v1/links", json=link), 201, f"link {a} {b}")
        ca = await client.get("/api/v1/trust/roots.pem")
        _expect(ca, 200, "read the federation roots")
        (self.workdir / "roots.pem").write_bytes(ca.content)
        self.step("3 clusters registered, linked full-mesh (terminating mTLS)")

    async def join_token(self, client: httpx.AsyncClient, cluster: str) -> str:
        r = await client.post(f"/api/v1/clusters/{cluster}/join-tokens", json={})
        _expect(r, 201, f"join token for {cluster}")
        token: str = r.json()["token"]
        return token

    def common(self, c: topo.DemoCluster, token: str) -> list[str]:
        return ["--cluster", c.name, "--registry", f"127.0.0.1:{self.grpc_port}",
                "--join-token", token, "--trust-domain", c.trust_domain,
                "--registry-ca", str(self.workdir / "roots.pem"),
                "--region", c.region, "--zone", c.zone]  # fmt: skip

    async def start_cluster(self, client: httpx.AsyncClient, c: topo.DemoCluster) -> None:
        home = self.workdir / c.name
        home.mkdir()
        static = home / "services.yaml"
        static.write_text(c.static_source())
        if c.exports_echo:
            self.echo_servers.append(await start_echo(c.name, c.ip, topo.ECHO_PORT))
        agent_argv = ["agent", *self.common(c, await self.join_token(client, c.name)),
                      "--static", str(static), "--imports-file", str(home / "imports.yaml"),
                      "--egress-address", c.ip, "--dns", f"{c.ip}:{topo.DNS_PORT}",
                      "--admin-address", c.agent_admin]  # fmt: skip
        self.children.start(f"agent-{c.name}", agent_argv)
        gateway_argv = ["gateway", *self.common(c, await self.join_token(client, c.name)),
                        "--state-dir", str(home / "gateway"), "--egress-address", c.ip,
                        "--egress-port-offset", "0", "--listen", c.gateway,
                        "--admin", c.admin]  # fmt: skip
        self.gateways[c.name] = self.children.start(f"gateway-{c.name}", gateway_argv)

    async def wait_for_routes(self) -> None:
        client, near, far = topo.CLIENT, topo.NEAR, topo.FAR
        async with httpx.AsyncClient(timeout=2) as http:

            async def egress_ready() -> bool:
                config = (await http.get(f"http://{client.admin}/config")).json()
                for e in config.get("egress", []):
                    clusters = {c["name"] for c in e.get("clusters", [])}
                    if (
                        e["listen"].endswith(f":{topo.SERVICE_PORT}")
                        and {near.name, far.name} <= clusters
                    ):
                        return True
                return False

            await wait_until(
                f"{client.name}'s egress for {topo.NAMESPACE}/{topo.SERVICE} with both exporters",
                egress_ready, READY_TIMEOUT, self.gateways[client.name],
            )  # fmt: skip

        async def served() -> bool:
            sample = await one_request(*client.egress, 0)
            return sample.served_by == near.name

        await wait_until(
            f"a request from {client.name} served by {near.name}", served, READY_TIMEOUT
        )
        self.step(f"{client.name} reaches {topo.NAMESPACE}/{topo.SERVICE} through its gateway")

    async def show(self, recorder: Recorder, seconds: float, label: str) -> None:
        """Print one line per second: who served the last second's requests."""
        for _ in range(max(1, round(seconds))):
            start = time.monotonic()
            await asyncio.sleep(1.0)
            window = [s for s in recorder.since(start)]
            counts = "  ".join(f"{k}={v}" for k, v in served_counts(window).items())
            self.say(f"    {label:<10} {counts or '(no requests)'}")

    async def traffic_phases(self) -> None:
        near, far = topo.NEAR, topo.FAR
        recorder, stop = Recorder(), asyncio.Event()
        load = asyncio.create_task(steady(*topo.CLIENT.egress, self.options.rate, recorder, stop))
        try:
            self.say(f"  steady traffic from {topo.CLIENT.name}, {self.options.rate:.0f} req/s:")
            await self.show(recorder, self.options.phase_seconds, "nearest")
            stopped_at = time.monotonic()
            await self.gateways[near.name].stop()
            self.say(f"  stopped {near.name}'s gateway:")
            await self.show(recorder, self.options.phase_seconds, "failover")
            self.summary.failover_seconds = first_served_by(recorder.samples, far.name, stopped_at)
            self.gateways[near.name].start()  # same state dir: its SVID, no new token
            restored_at = time.monotonic()
            self.say(f"  restored {near.name}'s gateway:")
            deadline = restored_at + RETURN_TIMEOUT
            while first_served_by(recorder.samples, near.name, restored_at) is None:
                if time.monotonic() > deadline:
                    raise DemoError(
                        f"traffic did not return to {near.name} within {RETURN_TIMEOUT:.0f} s"
                    )
                await self.show(recorder, 1, "return")
            await self.show(recorder, 2, "return")
            self.summary.return_seconds = first_served_by(recorder.samples, near.name, restored_at)
        finally:
            stop.set()
            await load
        self._tally(recorder.samples)

    def _tally(self, samples: list[Sample]) -> None:
        self.summary.requests = len(samples)
        self.summary.failed = sum(1 for s in samples if s.served_by is None)
        self.summary.served_by = served_counts(samples)
        errors = sorted({s.error for s in samples if s.error})
        if errors:
            self.summary.error = "failed requests: " + ", ".join(errors)

    async def run(self) -> Summary:
        try:
            client = await self.start_registry()
            try:
                await self.register(client)
                for c in topo.CLUSTERS:
                    await self.start_cluster(client, c)
                self.step("agents and gateways started for east, east2, west")
                await self.wait_for_routes()
                await self.traffic_phases()
            finally:
                await client.aclose()
            self.summary.ok = self.summary.failed == 0 and self.summary.failover_seconds is not None
        except (DemoError, httpx.HTTPError, OSError) as exc:
            self.summary.error = str(exc) or type(exc).__name__
        return self.summary

    async def close(self, keep_logs: bool) -> None:
        await self.children.stop_all()
        for server in self.echo_servers:
            server.close()
        if not keep_logs:
            shutil.rmtree(self.workdir, ignore_errors=True)


def _expect(response: httpx.Response, status: int, what: str) -> None:
    if response.status_code != status:
        raise DemoError(f"{what}: HTTP {response.status_code}: {response.text[:300]}")


def summary_lines(s: Summary) -> list[str]:
    mark = "\u221a" if s.ok else "\u00d7"
    lines = [
        f"{mark} demo {'passed' if s.ok else 'FAILED'}",
        f"  requests {s.requests}, failed {s.failed}, served by "
        + ", ".join(f"{k} {v}" for k, v in s.served_by.items()),
    ]
    if s.failover_seconds is not None:
        lines.append(
            f"  failover to {topo.FAR.name}: {s.failover_seconds * 1000:.0f} ms after the stop"
        )
    if s.return_seconds is not None:
        lines.append(f"  back to {topo.NEAR.name}: {s.return_seconds:.1f} s after the restore")
    lines.append(f"  dashboard: {s.dashboard}  (token: {s.token_path})")
    if s.error:
        lines.append(f"  error: {s.error}")
    return lines


async def demo(options: DemoOptions, say: Callable[[str], None] = print) -> int:
    run = Demo(options, say)
    summary = Summary()
    try:
        summary = await run.run()
        for line in summary_lines(summary):
            say(line)
        if options.summary_json is not None:
            options.summary_json.write_text(json.dumps(asdict(summary), indent=2) + "\n")
        if options.keep_running and summary.ok:
            say("everything stays up; Ctrl-C to stop")
            await asyncio.Event().wait()
    finally:
        keep = options.keep_running or not summary.ok
        if keep:
            say(f"logs: {run.workdir / 'logs'}")
        await run.close(keep_logs=keep)
    return 0 if summary.ok else 1
