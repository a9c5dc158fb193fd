"""Ingress end to end, real TLS on loopback: passthrough, terminate, rejects, limits."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import yaml
from gateway_pki import PKI, EchoServer, start_echo
from gateway_testlib import real_client_hello

from eastwest_gateway.gateway import Gateway
from eastwest_gateway.main import run
from eastwest_gateway.routefile import HostPort
from eastwest_gateway.settings import GatewaySettings

ISTIO_SNI = "outbound_.8443_._.echo.demo.svc.cluster.local"
MESHFED_SNI = "echo.demo.svc.clusterset.local"
LOCAL = HostPort("127.0.0.1", 0)
FAST = GatewaySettings(
    client_hello_timeout=0.5,
    handshake_timeout=2.0,
    connect_timeout=1.0,
    drain_deadline=0.5,
    reload_poll_interval=0.1,
)

GatewayFactory = Callable[..., Awaitable[Gateway]]


def write_routes(path: Path, pki: PKI, routes: list[dict[str, object]]) -> None:
    tls = {"cert": str(pki.west_gw.cert), "key": str(pki.west_gw.key), "ca": str(pki.ca)}
    path.write_text(yaml.safe_dump({"tls": tls, "routes": routes}))


@pytest.fixture
async def make_gateway(tmp_path: Path, pki: PKI) -> AsyncIterator[GatewayFactory]:
    started: list[Gateway] = []

    async def factory(routes: list[dict[str, object]], **overrides: object) -> Gateway:
        path = tmp_path / "routes.yaml"
        write_routes(path, pki, routes)
        settings = dataclasses.replace(FAST, **overrides)  # type: ignore[arg-type]
        gw = Gateway("west", path, settings)
        await gw.start(LOCAL, LOCAL)
        started.append(gw)
        return gw

    yield factory
    for gw in started:
        await gw.shutdown()


async def tls_echo(
    gw: Gateway, ctx: ssl.SSLContext, sni: str, payload: bytes = b"hello"
) -> tuple[bytes, ssl.SSLObject | None]:
    addr = gw.ingress.address
    reader, writer = await asyncio.open_connection(
        addr.host, addr.port, ssl=ctx, server_hostname=sni
    )
    writer.write(payload)
    await writer.drain()
    got = await asyncio.wait_for(reader.readexactly(len(payload)), 5)
    obj = writer.get_extra_info("ssl_object")
    writer.close()
    return got, obj


async def admin_get(gw: Gateway, path: str) -> tuple[int, str]:
    addr = gw.admin.address
    reader, writer = await asyncio.open_connection(addr.host, addr.port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    data = await reader.read()
    writer.close()
    head, _, body = data.decode().partition("\r\n\r\n")
    return int(head.split()[1]), body


def metric(body: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in body.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


@pytest.mark.parametrize("relay", ["splice", "asyncio"])
async def test_passthrough_end_to_end_mtls(
    make_gateway: GatewayFactory, pki: PKI, relay: str
) -> None:
    backend = await start_echo(pki.workload_server.server_context())
    gw = await make_gateway(
        [{"sni": ISTIO_SNI, "backend": f"127.0.0.1:{backend.port}", "mode": "passthrough"}],
        relay=relay,
    )
    payload = bytes(range(256)) * 8192  # 2 MiB both ways
    got, obj = await tls_echo(gw, pki.workload_client.client_context(["h2"]), ISTIO_SNI, payload)
    assert got == payload
    # end-to-end: the workload saw the client workload's identity, not the gateway's
    assert backend.peers == ["spiffe://east.meshfed/ns/demo/sa/client"]
    assert obj is not None and "echo" in str(obj.getpeercert())
    # the same service through meshfed's SNI format
    got, _ = await tls_echo(gw, pki.workload_client.client_context(), "8443." + MESHFED_SNI)
    assert got == b"hello"
    await asyncio.sleep(0.1)
    _, body = await admin_get(gw, "/metrics")
    assert metric(body, "meshfed_gateway_connections_total", service="demo/echo", outcome="ok") >= 1
    assert metric(body, "meshfed_gateway_bytes_total", flow="rx") > len(payload)
    backend.kill()


async def test_terminate_allow_and_deny(
    make_gateway: GatewayFactory, pki: PKI, echo: EchoServer
) -> None:
    gw = await make_gateway(
        [
            {
                "sni": MESHFED_SNI,
                "backend": f"127.0.0.1:{echo.port}",
                "mode": "terminate",
                "allow": [pki.east_gw.spiffe_id],
            }
        ]
    )
    got, _ = await tls_echo(gw, pki.east_gw.client_context(), MESHFED_SNI, b"x" * 100_000)
    assert got == b"x" * 100_000
    assert echo.connections == 1

    # a valid certificate whose identity is not allowed: closed, no backend connection
    addr = gw.ingress.address
    reader, writer = await asyncio.open_connection(
        addr.host, addr.port, ssl=pki.evil_gw.client_context(), server_hostname=MESHFED_SNI
    )
    writer.write(b"let me in")
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()

    # a certificate from another CA fails the handshake
    with pytest.raises((ssl.SSLError, ConnectionError)):
        await tls_echo(gw, pki.stranger.client_context(), MESHFED_SNI)
    # no client certificate at all
    bare = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    bare.check_hostname = False
    bare.load_verify_locations(cafile=pki.ca)
    with pytest.raises((ssl.SSLError, ConnectionError, asyncio.IncompleteReadError)):
        await tls_echo(gw, bare, MESHFED_SNI)

    assert echo.connections == 1
    _, body = await admin_get(gw, "/metrics")
    assert metric(body, "meshfed_gateway_connections_total", outcome="denied") == 1
    assert metric(body, "meshfed_gateway_connections_total", peer="east.meshfed", outcome="ok") == 1
    assert metric(body, "meshfed_gateway_handshake_failures_total") >= 2


async def test_unknown_sni_gets_alert_and_no_backend(
    make_gateway: GatewayFactory, pki: PKI, echo: EchoServer
) -> None:
    gw = await make_gateway([{"sni": MESHFED_SNI, "backend": f"127.0.0.1:{echo.port}"}])
    with pytest.raises(ssl.SSLError, match="UNRECOGNIZED_NAME"):
        await tls_echo(gw, pki.workload_client.client_context(), "nope.demo.svc.clusterset.local")
    assert echo.connections == 0
    _, body = await admin_get(gw, "/metrics")
    assert metric(body, "meshfed_gateway_connections_total", service="", outcome="unknown_sni") == 1


@pytest.mark.parametrize(
    ("data", "reason", "alert"),
    [
        (b"GET / HTTP/1.1\r\n\r\n", "not_tls", b""),
        (bytes([22, 3, 1, 0, 0]), "malformed", b"\x15\x03\x03\x00\x02\x02\x32"),
        (
            bytes([22, 3, 1, 0, 8, 2, 0, 0, 4, 0, 0, 0, 0]),
            "malformed",
            b"\x15\x03\x03\x00\x02\x02\x32",
        ),
        (bytes([22, 3, 1, 0, 4, 1, 1, 0, 0]), "oversized", b"\x15\x03\x03\x00\x02\x02\x32"),
    ],
)
async def test_malformed_client_hello_over_the_wire(
    make_gateway: GatewayFactory, echo: EchoServer, data: bytes, reason: str, alert: bytes
) -> None:
    gw = await make_gateway([{"sni": MESHFED_SNI, "backend": f"127.0.0.1:{echo.port}"}])
    addr = gw.ingress.address
    reader, writer = await asyncio.open_connection(addr.host, addr.port)
    writer.write(data)
    assert await asyncio.wait_for(reader.read(), 5) == alert
    writer.close()
    _, body = await admin_get(gw, "/metrics")
    assert metric(body, "meshfed_gateway_handshake_failures_total", reason=reason) == 1
    assert echo.connections == 0


async def test_slowloris_closed_at_timeout_while_others_served(
    make_gateway: GatewayFactory, pki: PKI
) -> None:
    backend = await start_echo(pki.workload_server.server_context())
    gw = await make_gateway([{"sni": ISTIO_SNI, "backend": f"127.0.0.1:{backend.port}"}])
    addr = gw.ingress.address
    hello = real_client_hello(ISTIO_SNI)
    loop = asyncio.get_running_loop()

    async def slowloris() -> float:
        reader, writer = await asyncio.open_connection(addr.host, addr.port)
        started = loop.time()
        try:
            for byte in hello:
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(0.05)
        except ConnectionError:
            pass
        with contextlib.suppress(ConnectionError):
            await asyncio.wait_for(reader.read(), 5)
        writer.close()
        return loop.time() - started

    slow = asyncio.create_task(slowloris())
    for _ in range(5):  # served normally while the slow client dribbles
        got, _ = await tls_echo(gw, pki.workload_client.client_context(), ISTIO_SNI)
        assert got == b"hello"
    elapsed = await slow
    assert 0.4 < elapsed < 3  # closed at the 0.5 s ClientHello timeout, not at the end
    _, body = await admin_get(gw, "/metrics")
    assert (
        metric(body, "meshfed_gateway_handshake_failures_total", reason="client_hello_timeout") == 1
    )
    assert backend.connections == 5
    backend.kill()


async def test_connection_limits_and_idle_timeout(make_gateway: GatewayFactory, pki: PKI) -> None:
    backend = await start_echo(pki.workload_server.server_context())
    gw = await make_gateway(
        [{"sni": ISTIO_SNI, "backend": f"127.0.0.1:{backend.port}"}],
        max_connections=1,
        idle_timeout=0.4,
    )
    addr = gw.ingress.address
    ctx = pki.workload_client.client_context()
    r1, w1 = await asyncio.open_connection(addr.host, addr.port, ssl=ctx, server_hostname=ISTIO_SNI)
    w1.write(b"a")
    assert await r1.readexactly(1) == b"a"
    with pytest.raises((ssl.SSLError, ConnectionError, asyncio.IncompleteReadError)):
        await tls_echo(gw, ctx, ISTIO_SNI)  # over the limit
    # idle: the first connection is closed by the gateway after 0.4 s of silence
    assert await asyncio.wait_for(r1.read(), 5) == b""
    w1.close()
    await asyncio.sleep(0.1)
    got, _ = await tls_echo(gw, ctx, ISTIO_SNI)  # capacity is back
    assert got == b"hello"
    _, body = await admin_get(gw, "/metrics")
    assert metric(body, "meshfed_gateway_connections_total", outcome="over_limit") == 1
    assert metric(body, "meshfed_gateway_connections_total", outcome="idle_timeout") == 1
    backend.kill()


async def test_reload_keeps_live_connections(
    make_gateway: GatewayFactory, pki: PKI, tmp_path: Path
) -> None:
    one = await start_echo(banner=b"1")
    two = await start_echo(banner=b"2")
    route = {"sni": MESHFED_SNI, "mode": "terminate", "allow": [pki.east_gw.spiffe_id]}
    gw = await make_gateway([{**route, "backend": f"127.0.0.1:{one.port}"}])
    addr = gw.ingress.address
    ctx = pki.east_gw.client_context()
    r1, w1 = await asyncio.open_connection(
        addr.host, addr.port, ssl=ctx, server_hostname=MESHFED_SNI
    )
    assert await r1.readexactly(1) == b"1"

    write_routes(tmp_path / "routes.yaml", pki, [{**route, "backend": f"127.0.0.1:{two.port}"}])
    assert gw.reload()
    r2, w2 = await asyncio.open_connection(
        addr.host, addr.port, ssl=ctx, server_hostname=MESHFED_SNI
    )
    assert await r2.readexactly(1) == b"2"
    w1.write(b"still here")  # the old connection still works
    assert await r1.readexactly(10) == b"still here"

    # a broken file is refused and the previous routes stay
    (tmp_path / "routes.yaml").write_text("routes: [{sni: x}]")
    assert not gw.reload()
    _, cfg = await admin_get(gw, "/config")
    assert json.loads(cfg)["routes"][0]["backend"] == f"127.0.0.1:{two.port}"
    for w in (w1, w2):
        w.close()
    one.kill()
    two.kill()


async def test_mtime_poll_reload(make_gateway: GatewayFactory, pki: PKI, tmp_path: Path) -> None:
    gw = await make_gateway([{"sni": "a.example", "backend": "127.0.0.1:1"}])
    write_routes(tmp_path / "routes.yaml", pki, [{"sni": "b.example", "backend": "127.0.0.1:2"}])
    for _ in range(50):
        await asyncio.sleep(0.05)
        if gw.ingress.config.table.lookup("b.example") is not None:
            break
    assert gw.ingress.config.table.lookup("b.example") is not None


async def test_admin_endpoints_and_drain(make_gateway: GatewayFactory, pki: PKI) -> None:
    backend = await start_echo(pki.workload_server.server_context())
    gw = await make_gateway([{"sni": ISTIO_SNI, "backend": f"127.0.0.1:{backend.port}"}])
    assert await admin_get(gw, "/ready") == (200, "ready\n")
    status, cfg = await admin_get(gw, "/config")
    assert status == 200 and json.loads(cfg)["routes"][0]["sni"] == ISTIO_SNI
    assert (await admin_get(gw, "/nope"))[0] == 404
    addr = gw.ingress.address
    r, w = await asyncio.open_connection(
        addr.host, addr.port, ssl=pki.workload_client.client_context(), server_hostname=ISTIO_SNI
    )
    w.write(b"z")
    assert await r.readexactly(1) == b"z"
    aborted = await gw.shutdown()  # drain deadline 0.5 s; the live connection is cut
    assert aborted == 1
    assert await asyncio.wait_for(r.read(), 5) == b""
    with pytest.raises(OSError):
        await asyncio.open_connection(addr.host, addr.port)
    w.close()
    backend.kill()


def test_run_rejects_bad_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["--cluster", "west", "--routes", "r.yaml", "--listen", "nope"]) == 2
    assert "nope" in capsys.readouterr().err
    assert run(["--cluster", "Bad_Name", "--routes", "r.yaml"]) == 2
    assert "Bad_Name" in capsys.readouterr().err
    bad = tmp_path / "r.yaml"
    bad.write_text("routes: [{sni: a, backend: 'x'}]")
    assert run(["--cluster", "west", "--routes", str(bad), "--listen", "127.0.0.1:0"]) == 2
    assert "routes[0].backend" in capsys.readouterr().err
