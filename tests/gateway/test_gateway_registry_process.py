"""Registry mode as a process: `meshfed gateway --registry ...` joins (with a token on the
command line, in a file or in the environment), opens egress, exits 0 on SIGTERM; a
token the registry refuses exits 1 without a secret in its output.
"""

from __future__ import annotations

import asyncio
import signal
import sys

import pytest
from gateway_pki import EchoServer
from registry_support import (
    EAST,
    ROOT,
    WEST,
    Registry,
    echo_service,
    eventually,
    free_port,
    gateway_process,
    http_get,
    open_egress,
    roundtrip,
    west_ingress_ready,
)


async def test_meshfed_gateway_registry_cli_process(registry: Registry, echo: EchoServer) -> None:
    """`meshfed gateway --registry ...` as a process: joins, opens egress, SIGTERM exits 0."""
    west = await registry.gateway(await registry.options(WEST, None))
    await registry.link("east", "west")
    port = free_port()
    await registry.agent_exports(WEST, echo_service(port, echo.port))
    await eventually(lambda: west_ingress_ready(west, port))
    opts = await registry.options(EAST, None)
    admin = free_port()
    ca = registry.tmp / "roots.pem"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "eastwest_gateway.main",
        *("--cluster", "east", "--registry", registry.address, "--join-token", opts.join_token),
        *("--trust-domain", EAST.trust_domain, "--registry-ca", str(ca)),
        *("--join-address", opts.join_address, "--state-dir", str(registry.tmp / "cli-state")),
        *("--region", EAST.region, "--zone", EAST.zone, "--listen", "127.0.0.1:0"),
        *("--admin", f"127.0.0.1:{admin}"),
        cwd=ROOT,
        stderr=asyncio.subprocess.PIPE,
    )
    try:

        async def configured() -> bool:
            try:
                return f'"listen": "127.0.0.1:{port}"'.encode() in await http_get(admin, "/config")
            except OSError:
                return False

        await eventually(configured, timeout=20)
        conn = await open_egress(port)
        assert await roundtrip(conn, b"via the cli") == b"via the cli"
        conn[1].close()
        assert (registry.tmp / "cli-state" / "view.json").exists()
        assert (registry.tmp / "cli-state" / "key.pem").stat().st_mode & 0o077 == 0
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 0, err.decode()
    assert opts.join_token not in err.decode()


@pytest.mark.parametrize("via", ["file", "env"])
async def test_meshfed_gateway_joins_with_a_token_file_or_the_environment(
    registry: Registry, via: str
) -> None:
    """The token stays out of the command line: `--join-token-file` or
    `$MESHFED_JOIN_TOKEN` (what the install manifest uses); "joined as" at INFO."""
    token = (await registry.options(EAST, None)).join_token
    env = {"MESHFED_JOIN_TOKEN": ""}
    extra: list[str] = []
    if via == "file":
        (registry.tmp / "east.token").write_text(token + "\n")
        extra = ["--join-token-file", str(registry.tmp / "east.token")]
    else:
        env["MESHFED_JOIN_TOKEN"] = token
    admin = free_port()
    proc = await gateway_process(registry, extra, env, admin)
    assert proc.stderr is not None
    seen = b""
    try:
        while b"joined as" not in seen:
            line = await asyncio.wait_for(proc.stderr.readline(), 20)
            assert line, f"gateway exited: {seen.decode()}"
            seen += line

        async def serving() -> bool:
            try:
                return bool(await http_get(admin, "/config"))
            except OSError:
                return False

        await eventually(serving, timeout=20)  # signal handlers are installed by now
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 0, (seen + err).decode()
    assert f"joined as spiffe://{EAST.trust_domain}/meshfed/gateway/east" in seen.decode()
    assert token not in (seen + err).decode()


async def test_meshfed_gateway_token_the_registry_refuses_exits_1(registry: Registry) -> None:
    """Well-formed but unknown: refused at join time, exit 1 (as the agent), no secret."""
    token = "abcdef0123456789.not-a-real-secret"
    proc = await gateway_process(registry, [], {"MESHFED_JOIN_TOKEN": token})
    _, err = await asyncio.wait_for(proc.communicate(), 20)
    text = err.decode()
    assert proc.returncode == 1, text
    assert (
        "meshfed gateway: error: $MESHFED_JOIN_TOKEN: the registry refused the join token"
        " (unknown join token)" in text
    )
    assert "not-a-real-secret" not in text and "Traceback" not in text
