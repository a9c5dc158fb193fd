"""The agent's admin endpoint for real: HTTP, end-to-end agents, the process.

The end-to-end tests run agents against a real registry control plane (SQLite,
mTLS): in process with `AdminServer.for_agent`, and as a `meshfed agent` process.
Every request goes over a plain TCP connection and reads until the server closes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import signal
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from admin_support import parse
from kube_pipeline import eventually, seed
from kubernetes import client
from registry_fixture import CLUSTERS, Registry, agent_config, registry

from discovery_sync.admin import MAX_HEAD, AdminServer
from discovery_sync.agent import Agent
from discovery_sync.leader import Timing
from discovery_sync.main import run as agent_main
from tests.fakekube import FakeKube
from tests.servers.ports import free_port

WEST_STATIC = """
services:
  - {namespace: demo, name: echo, ports: [{name: http, port: 8080, protocol: TCP}],
     endpoints: [{address: 10.5.0.1, port: 9000, zone: us-west-2a, ready: true}]}
"""

# --- HTTP over a plain connection -----------------------------------------------------


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: str


async def exchange(port: int, raw: bytes) -> Answer:
    """Send `raw`, read until the server closes the connection (it must), parse."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(raw)
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), 10)  # EOF: the server closed
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    version, code, _ = status_line.split(" ", 2)
    assert version == "HTTP/1.1"
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    assert int(headers["content-length"]) == len(body)
    assert headers["connection"] == "close"
    return Answer(int(code), headers, body.decode())


async def get(port: int, path: str) -> Answer:
    return await exchange(port, f"GET {path} HTTP/1.1\r\nHost: agent\r\n\r\n".encode())


async def metrics(port: int) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    answer = await get(port, "/metrics")
    assert answer.status == 200
    assert answer.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    return parse(answer.body)


def value(
    m: dict[str, dict[tuple[tuple[str, str], ...], float]], name: str, **labels: str
) -> float:
    return m[name][tuple(sorted(labels.items()))]


async def until(check: Callable[[], Awaitable[bool]], timeout: float) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "condition not met"
        await asyncio.sleep(0.05)


@pytest.fixture
async def reg(tmp_path: Path) -> AsyncIterator[Registry]:
    async with registry(tmp_path) as r:
        yield r


@contextlib.asynccontextmanager
async def serving(agent: Agent) -> AsyncIterator[int]:
    """The agent's admin endpoint on a free loopback port (the agent not started)."""
    admin = AdminServer.for_agent(agent)
    await admin.start("127.0.0.1", 0)
    try:
        yield admin.address[1]
    finally:
        await admin.close()


@contextlib.asynccontextmanager
async def running(*agents: Agent) -> AsyncIterator[None]:
    tasks = [asyncio.create_task(a.run()) for a in agents]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task


async def test_static_agents_not_ready_until_joined_and_listed_then_metrics(
    reg: Registry, tmp_path: Path
) -> None:
    west_file, east_file = tmp_path / "west.yaml", tmp_path / "east.yaml"
    west = Agent(await agent_config(reg, "west", static_file=str(west_file)))  # file not there yet
    east_file.write_text("services: []\n")
    east = Agent(await agent_config(reg, "east", static_file=str(east_file)))
    async with serving(west) as port, serving(east) as east_port:
        assert (await get(port, "/healthz")).status == 200
        answer = await get(port, "/readyz")
        assert answer.status == 503
        assert answer.body.splitlines() == [
            "registry: not joined yet",
            "source: initial list of the static file not complete",
        ]
        m = await metrics(port)
        assert value(m, "meshfed_agent_ready") == 0.0
        assert value(m, "meshfed_agent_registry_joined") == 0.0
        assert "meshfed_agent_svid_expiry_timestamp_seconds" not in m
        async with running(west, east):
            # joined, but the static file is missing: not ready, for that reason only

            async def joined_only() -> bool:
                return (await get(port, "/readyz")).body == (
                    "source: initial list of the static file not complete\n"
                )

            await until(joined_only, 15)
            assert (await get(port, "/readyz")).status == 503
            west_file.write_text(WEST_STATIC)

            async def ready() -> bool:
                return (await get(port, "/readyz")).status == 200

            await until(ready, 15)
            assert (await get(port, "/readyz")).body == "ok\n"
            assert (await get(port, "/healthz")).body == "ok\n"

            async def imported() -> bool:
                m = await metrics(east_port)
                return value(m, "meshfed_agent_imported_services") == 1.0

            await until(imported, 15)

            async def exported() -> bool:
                m = await metrics(port)
                return value(m, "meshfed_agent_exported_services") == 1.0

            await until(exported, 15)
            m = await metrics(port)
            assert value(m, "meshfed_agent_ready") == 1.0
            assert value(m, "meshfed_agent_registry_joined") == 1.0
            assert value(m, "meshfed_agent_source_listed") == 1.0
            assert value(m, "meshfed_agent_source_services") == 1.0
            assert value(m, "meshfed_agent_export_stream_up") == 1.0
            assert value(m, "meshfed_agent_export_stream_restarts_total") == 0.0
            assert value(m, "meshfed_agent_leader") == 1.0
            assert west.registry is not None
            expiry = value(m, "meshfed_agent_svid_expiry_timestamp_seconds")
            assert expiry == west.registry.identity.not_after.timestamp()
            e = await metrics(east_port)
            assert value(e, "meshfed_agent_import_revision") > 0
            assert value(e, "meshfed_agent_import_views_total") >= 1
            # the registry goes away: the export stream restarts are counted, still ready
            await reg.plane.stop(0)

            async def restarted() -> bool:
                m = await metrics(port)
                return value(m, "meshfed_agent_export_stream_restarts_total") >= 1

            await until(restarted, 15)
            assert value(await metrics(port), "meshfed_agent_export_stream_up") == 0.0
            assert (await get(port, "/readyz")).status == 200


async def test_garbage_gets_4xx_a_reason_and_a_closed_connection(
    reg: Registry, tmp_path: Path
) -> None:
    agent = Agent(await agent_config(reg, "east", static_file=str(tmp_path / "none.yaml")))
    async with serving(agent) as port:
        cases = [
            (b"garbage\r\n\r\n", 400, "malformed request line"),
            (b"GET /readyz\r\n\r\n", 400, "malformed request line"),  # HTTP/0.9 style
            (b"GET readyz HTTP/1.1\r\n\r\n", 400, "malformed request line"),
            (b"GET /readyz HTTP/2.0\r\n\r\n", 400, "malformed request line"),
            (b"GET /readyz HTTP/1.1\r\nno colon here\r\n\r\n", 400, "malformed header line"),
            (b"GET /readyz HTTP/1.1\r\n folded: x\r\n\r\n", 400, "malformed header line"),
            (
                b"GET /readyz HTTP/1.1\r\nX-Big: " + b"a" * MAX_HEAD + b"\r\n\r\n",
                400,
                f"request head over {MAX_HEAD} bytes",
            ),
            (b"GET /readyz HTTP/1.1\r\nHost: x\r\n", 400, "incomplete request head"),
            (b"GET /admin HTTP/1.1\r\n\r\n", 404, "no such path '/admin'"),
            (b"GET / HTTP/1.1\r\n\r\n", 404, "no such path '/'"),
            (b"POST /readyz HTTP/1.1\r\nContent-Length: 0\r\n\r\n", 405, "method POST"),
            (b"DELETE /metrics HTTP/1.1\r\n\r\n", 405, "method DELETE"),
        ]
        for raw, status, reason in cases:
            if raw.endswith(b"\r\n\r\n"):
                answer = await exchange(port, raw)
            else:  # the client half-closes before the head is complete
                answer = await half_closed(port, raw)
            assert answer.status == status, raw[:40]
            assert answer.body.startswith(reason), (raw[:40], answer.body)
            assert answer.body.endswith("\n") and answer.body.count("\n") == 1
            assert "Traceback" not in answer.body
        assert (await exchange(port, b"POST /readyz HTTP/1.1\r\n\r\n")).headers["allow"] == "GET"
        # a connection that sends nothing (a TCP probe) is closed quietly, not counted
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write_eof()
        assert await asyncio.wait_for(reader.read(), 10) == b""
        writer.close()
        # the query string is ignored; the endpoint still answers after all that
        assert (await get(port, "/healthz?verbose=1")).status == 200
        m = await metrics(port)
        assert value(m, "meshfed_agent_admin_rejected_requests_total", code="400") == 8
        assert value(m, "meshfed_agent_admin_rejected_requests_total", code="404") == 2
        assert value(m, "meshfed_agent_admin_rejected_requests_total", code="405") == 3


async def half_closed(port: int, raw: bytes) -> Answer:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    writer.write_eof()
    data = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    code = int(head.split(b" ", 2)[1])
    return Answer(code, {}, body.decode())


FAST = Timing(2, 1.0, 0.25)


async def test_leader_and_standby_are_both_ready_and_export_leadership(
    reg: Registry, tmp_path: Path
) -> None:
    with FakeKube(bookmark_interval=0.2) as kube:
        (tmp_path / "east.kubeconfig").write_text(kube.kubeconfig_yaml())
        core = client.CoreV1Api(client.ApiClient(kube.kube_config()))
        core.create_namespace({"metadata": {"name": "demo"}})
        core.create_namespace({"metadata": {"name": "meshfed-system"}})
        seed(kube, "demo", "echo", ["10.6.0.1"])
        replicas = [
            Agent(
                await agent_config(
                    reg,
                    "east",
                    kubeconfig=str(tmp_path / "east.kubeconfig"),
                    leader_elect=True,
                    lease_timing=FAST,
                    identity=name,
                )
            )
            for name in ("east-1", "east-2")
        ]
        async with serving(replicas[0]) as port_1, serving(replicas[1]) as port_2:
            assert (await get(port_1, "/readyz")).body.splitlines() == [
                "registry: not joined yet",
                "source: initial list of the Kubernetes informers not complete",
            ]
            async with running(*replicas):

                async def both_ready() -> bool:
                    answers = [await get(p, "/readyz") for p in (port_1, port_2)]
                    return all(a.status == 200 for a in answers)

                await until(both_ready, 20)
                await eventually(lambda: any(r.elector and r.elector.is_leader() for r in replicas))
                lease = "meshfed-system/meshfed-agent-east"
                leading = {
                    p: value(await metrics(p), "meshfed_agent_leader", lease=lease)
                    for p in (port_1, port_2)
                }
                assert sorted(leading.values()) == [0.0, 1.0]
                leader_port = next(p for p, v in leading.items() if v == 1.0)
                m = await metrics(leader_port)
                transitions = "meshfed_agent_leader_transitions_total"
                assert value(m, transitions, lease=lease, transition="acquired") == 1.0
                assert value(m, "meshfed_agent_ready") == 1.0


# --- the command line -------------------------------------------------------------------


def base_args(ca: Path, static: Path, registry: str = "127.0.0.1:9471") -> list[str]:
    return [
        "--cluster",
        "east",
        "--registry",
        registry,
        "--join-token",
        "abcdef.s3cret",
        "--trust-domain",
        "east.test",
        "--registry-ca",
        str(ca),
        "--static",
        str(static),
    ]


def test_cli_bad_admin_address_exits_2_naming_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n")
    for bad in ("nohost", "127.0.0.1:99999", "127.0.0.1:0", "::1:9474", "of"):
        with pytest.raises(SystemExit) as exit_:
            agent_main([*base_args(ca, ca), "--admin-address", bad])
        assert exit_.value.code == 2
        assert "--admin-address" in capsys.readouterr().err


def test_cli_admin_port_taken_exits_1(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = agent_main([*base_args(ca, ca), "--admin-address", f"127.0.0.1:{port}"])
    assert code == 1
    err = capsys.readouterr().err
    assert f"--admin-address: cannot bind 127.0.0.1:{port}" in err
    assert "Traceback" not in err


async def test_meshfed_agent_process_serves_readyz(reg: Registry, tmp_path: Path) -> None:
    ca, static = tmp_path / "roots.pem", tmp_path / "east.yaml"
    ca.write_bytes(await reg.bundle())
    static.write_text("services: []\n")
    port = free_port()
    stderr = (tmp_path / "agent.log").open("wb")
    args = base_args(ca, static, reg.plane.address)
    token = await reg.token("east")
    (tmp_path / "east.token").write_text(token + "\n")
    at = args.index("--join-token")
    args[at : at + 2] = ["--join-token-file", str(tmp_path / "east.token")]  # not in `ps`
    args[args.index("--trust-domain") + 1] = CLUSTERS["east"].trust_domain
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "federation.cli",
        "agent",
        *args,
        "--join",
        reg.plane.join_address,
        "--admin-address",
        f"127.0.0.1:{port}",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=stderr,
    )
    try:

        async def ready() -> bool:
            assert proc.returncode is None, "the agent exited"
            try:
                return (await get(port, "/readyz")).status == 200
            except OSError:  # not listening yet
                return False

        await until(ready, 30)
        m = await metrics(port)
        assert value(m, "meshfed_agent_registry_joined") == 1.0
        assert not math.isnan(value(m, "meshfed_agent_svid_expiry_timestamp_seconds"))
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 20) == 0
        log = (tmp_path / "agent.log").read_text()
        assert f"admin endpoint on http://127.0.0.1:{port}" in log
        # INFO by default: whom it joined as, never the token
        assert f"joined as spiffe://{CLUSTERS['east'].trust_domain}/" in log
        assert token.partition(".")[2] not in log
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        stderr.close()
