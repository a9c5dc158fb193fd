"""A blackholed peer gateway (a partition: its SYNs vanish) costs one peer connect timeout,
and a handshake cut off half-way one peer handshake timeout.

The blackhole is a real listening socket on loopback whose accept queue is full
(``listen(0)`` plus one connection nobody accepts): Linux drops every further SYN
(``LISTENOVERFLOWS``), so a connect hangs exactly as it does towards a peer behind a
partition -- no refusal, no ICMP, just silence.

The backend ``connect_timeout`` and the general ``handshake_timeout`` are set far
beyond the guards here, so a request is served only if the egress gives up on the
peer after the short peer timeouts and moves on to the next cluster.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from gateway_pki import PKI, start_echo

from eastwest_gateway.gateway import Gateway
from eastwest_gateway.main import build_parser, run
from eastwest_gateway.ranking import Health
from eastwest_gateway.routefile import HostPort
from eastwest_gateway.settings import GatewaySettings

GUARD = 30.0  # only ends a hung test; far below connect_timeout, far above the peer timeout
SETTINGS = dataclasses.replace(
    GatewaySettings(),
    connect_timeout=600.0,  # would hang every request past GUARD if egress used it
    peer_connect_timeout=0.2,
    handshake_timeout=600.0,  # likewise for the origination handshake
    peer_handshake_timeout=0.2,
    eject_after_failures=2,
    ejection_base=60.0,
    probe_interval=60.0,  # one probe round at start; the probe test sets its own
)


@pytest.fixture
def blackhole() -> Iterator[HostPort]:
    """A loopback address whose SYNs are dropped (full accept queue)."""
    listener = socket.socket()
    filler = socket.socket()
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        filler.connect(listener.getsockname())  # takes the only accept-queue slot
        host, port = listener.getsockname()
        yield HostPort(host, port)
    finally:
        filler.close()
        listener.close()


def route_file(tmp_path: Path, near: HostPort, far_port: int) -> Path:
    def cluster(name: str, zone: str, region: str, gateway: str) -> dict[str, object]:
        return {"name": name, "region": region, "zone": zone, "gateways": [gateway]}

    routes = {
        "locality": {"region": "r1", "zone": "a"},
        "routes": [],
        "egress": [
            {
                "listen": "127.0.0.1:0",
                "sni": "echo.demo.svc.clusterset.local",
                "mode": "passthrough",
                "clusters": [
                    cluster("near", "a", "r1", f"{near.host}:{near.port}"),
                    cluster("far", "c", "r2", f"127.0.0.1:{far_port}"),
                ],
            }
        ],
    }
    path = tmp_path / "routes.yaml"
    path.write_text(yaml.safe_dump(routes))
    return path


async def banner_via(addr: HostPort) -> bytes:
    reader, writer = await asyncio.open_connection(addr.host, addr.port)
    try:
        return await reader.readexactly(1)
    finally:
        writer.close()


async def test_blackholed_nearest_peer_is_given_up_after_the_peer_timeout(
    tmp_path: Path, blackhole: HostPort
) -> None:
    far = await start_echo(banner=b"F")
    gw = Gateway("east", route_file(tmp_path, blackhole, far.port), SETTINGS)
    await gw.start(HostPort("127.0.0.1", 0), None)
    try:
        addr = gw.egress.address(HostPort("127.0.0.1", 0))
        failures = gw.metrics.connect_failures.labels("egress", "near")
        # 1st and 2nd connection: the nearest is tried, its SYNs vanish, the
        # peer timeout ends the attempt and the far cluster serves.
        for expected_failures in (1, 2):
            assert await asyncio.wait_for(banner_via(addr), GUARD) == b"F"
            assert failures._value.get() == expected_failures
        # two failures in a row ejected it: the next connection goes straight to far
        assert gw.metrics.ejections.labels("near")._value.get() == 1
        assert await asyncio.wait_for(banner_via(addr), GUARD) == b"F"
        assert failures._value.get() == 2
    finally:
        await gw.shutdown()
        far.kill()


async def test_origination_handshake_cut_off_half_way_moves_to_the_next_cluster(
    tmp_path: Path, pki: PKI
) -> None:
    """The peer accepts the connect, then nothing comes back (a partition after the
    SYN-ACK): after the peer handshake timeout the client's bytes, not yet read,
    go to the next cluster instead."""
    silent_peers: list[asyncio.StreamWriter] = []

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        silent_peers.append(writer)
        while await reader.read(65536):
            pass

    silent = await asyncio.start_server(swallow, "127.0.0.1", 0)
    far = await start_echo(pki.west_gw.server_context())
    path = route_file(tmp_path, HostPort("127.0.0.1", silent.sockets[0].getsockname()[1]), far.port)
    doc = yaml.safe_load(path.read_text())
    doc["tls"] = {"cert": str(pki.east_gw.cert), "key": str(pki.east_gw.key), "ca": str(pki.ca)}
    doc["egress"][0]["mode"] = "originate"
    path.write_text(yaml.safe_dump(doc))
    gw = Gateway("east", path, SETTINGS)
    await gw.start(HostPort("127.0.0.1", 0), None)
    try:
        addr = gw.egress.address(HostPort("127.0.0.1", 0))
        reader, writer = await asyncio.open_connection(addr.host, addr.port)
        writer.write(b"ping")
        await writer.drain()
        assert await asyncio.wait_for(reader.readexactly(4), GUARD) == b"ping"
        writer.close()
        assert silent_peers  # the nearest was tried first and held the handshake
        assert gw.metrics.connect_failures.labels("egress", "near")._value.get() == 1
        timeouts = gw.metrics.handshake_failures.labels("egress", "upstream_handshake")
        assert timeouts._value.get() == 1
    finally:
        await gw.shutdown()
        far.kill()
        silent.close()


async def wait_health(gw: Gateway, cluster: str, health: Health) -> None:
    while (state := gw.egress.probes.get(cluster)) is None or state.health is not health:
        await asyncio.sleep(0.05)


async def test_prober_marks_a_blackholed_peer_down(tmp_path: Path, blackhole: HostPort) -> None:
    far = await start_echo(banner=b"F")
    settings = dataclasses.replace(SETTINGS, probe_interval=0.05, peer_connect_timeout=0.1)
    gw = Gateway("east", route_file(tmp_path, blackhole, far.port), settings)
    await gw.start(HostPort("127.0.0.1", 0), None)
    try:
        await asyncio.wait_for(wait_health(gw, "near", Health.DOWN), GUARD)
        await asyncio.wait_for(wait_health(gw, "far", Health.UP), GUARD)
        gauge = gw.metrics.peer_health.labels("near", "down")
        assert gauge._value.get() == 1
    finally:
        await gw.shutdown()
        far.kill()


def test_peer_connect_timeout_flag(capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    args = parser.parse_args(["--cluster", "east", "--routes", "r.yaml"])
    assert args.peer_connect_timeout == GatewaySettings().peer_connect_timeout == 1.5
    args = parser.parse_args(
        ["--cluster", "east", "--routes", "r.yaml", "--peer-connect-timeout", "0.75"]
    )
    assert args.peer_connect_timeout == 0.75
    for bad in ("0", "-1", "nan", "inf", "soon", "301"):
        argv = ["--cluster", "east", "--routes", "r.yaml", "--peer-connect-timeout", bad]
        assert run(argv) == 2
        assert f"invalid seconds {bad!r}" in capsys.readouterr().err
