"""The admin HTTP endpoint (``--admin 127.0.0.1:15021``): /metrics, /ready, /config.

Why it exists: Prometheus scrapes and readiness probes need a plain HTTP port
(15021 is Istio's gateway status port). Three GET routes over HTTP/1.1 with
``Connection: close`` do not justify a web framework, so this is a minimal
asyncio server that reads one request head (bounded) and answers it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from typing import Final

from eastwest_gateway.net import open_listener
from eastwest_gateway.routefile import HostPort

MAX_HEAD: Final = 8192  # request head limit (the order of common servers' defaults)
READ_TIMEOUT: Final = 5.0
PROMETHEUS_TEXT: Final = "text/plain; version=0.0.4; charset=utf-8"  # exposition format 0.0.4


class AdminServer:
    def __init__(
        self,
        metrics: Callable[[], bytes],
        ready: Callable[[], bool],
        config: Callable[[], object],
    ) -> None:
        self._metrics = metrics
        self._ready = ready
        self._config = config
        self._server: asyncio.Server | None = None

    @property
    def address(self) -> HostPort:
        assert self._server is not None
        host, port = self._server.sockets[0].getsockname()[:2]
        return HostPort(host, port)

    async def start(self, listen: HostPort) -> None:
        self._server = await asyncio.start_server(self._handle, sock=open_listener(listen))

    def close(self) -> None:
        if self._server is not None:
            self._server.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT)
            if len(head) > MAX_HEAD:
                raise ValueError("head too large")
            method, path, _ = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
            status, ctype, body = self._route(method, path.split("?", 1)[0])
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ValueError):
            status, ctype, body = "400 Bad Request", "text/plain", b"bad request\n"
        writer.write(
            f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
            f"Connection: close\r\n\r\n".encode("latin-1")
            + body
        )
        with contextlib.suppress(OSError):
            await writer.drain()
        writer.close()

    def _route(self, method: str, path: str) -> tuple[str, str, bytes]:
        if method != "GET":
            return "405 Method Not Allowed", "text/plain", b"GET only\n"
        if path == "/metrics":
            return "200 OK", PROMETHEUS_TEXT, self._metrics()
        if path == "/ready":
            if self._ready():
                return "200 OK", "text/plain", b"ready\n"
            return "503 Service Unavailable", "text/plain", b"not ready\n"
        if path == "/config":
            body = json.dumps(self._config(), indent=2, sort_keys=True).encode() + b"\n"
            return "200 OK", "application/json", body
        return "404 Not Found", "text/plain", b"not found\n"
