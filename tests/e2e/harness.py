"""The federation under test: a registry and three clusters in network namespaces.

Modelled on `meshfed demo` (federation/cli/demo): every component is a real `meshfed`
process (`serve`, `agent --static`, `gateway --registry`) started with
`ip netns exec`, talking over real sockets and mTLS; the workload is the demo's echo
server; the load client is the demo's request shape (one request per new connection,
so every request goes through the egress ranker) run on a thread inside cluster `a`.

Clusters (issue 9): `a` us-east/zone-1 (the caller), `b` us-east/zone-2 and `c`
eu-west/zone-1 (both export demo/echo). Links: full mesh, terminating mTLS.

Processes live in process.py, the load client in load.py and packet capture in
capture.py; their names are re-exported here.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import httpx

from tests.e2e.capture import Capture as Capture
from tests.e2e.capture import Segment as Segment
from tests.e2e.capture import tls_records as tls_records
from tests.e2e.load import MARKER as MARKER
from tests.e2e.load import REQUEST_TIMEOUT as REQUEST_TIMEOUT
from tests.e2e.load import Load as Load
from tests.e2e.load import Sample as Sample
from tests.e2e.load import counts as counts
from tests.e2e.load import describe as describe
from tests.e2e.load import latency_p as latency_p
from tests.e2e.load import one_request as one_request
from tests.e2e.load import percentile as percentile
from tests.e2e.load import shift_figures as shift_figures
from tests.e2e.netns import ADDRESSES, Net
from tests.e2e.process import ROOT as ROOT
from tests.e2e.process import E2EError as E2EError
from tests.e2e.process import Proc as Proc
from tests.e2e.process import wait_until as wait_until

NAMESPACE, SERVICE = "demo", "echo"
SERVICE_PORT = 8080  # the service port; a's egress listener for it (offset 0)
ECHO_PORT = 9000
GATEWAY_PORT = 15443
ADMIN_PORT = 15021
DNS_PORT = 5353
API_PORT, GRPC_PORT = 9470, 9471
READY_TIMEOUT = 60.0  # a component coming up (cold imports on 2 cores)

LOCALITY = {"a": ("us-east", "zone-1"), "b": ("us-east", "zone-2"), "c": ("eu-west", "zone-1")}
EXPORTERS = ("b", "c")


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
