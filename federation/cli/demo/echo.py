"""The demo's sample workload: a TCP server that answers each line with its cluster name.

A reply names the cluster that served the request, which is how the demo shows
live where traffic goes.
"""

from __future__ import annotations

import asyncio


async def _serve_client(
    cluster: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    try:
        while line := await reader.readline():
            writer.write(f"{cluster} {line.decode(errors='replace').strip()}\n".encode())
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


async def start_echo(cluster: str, host: str, port: int) -> asyncio.Server:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _serve_client(cluster, reader, writer)

    return await asyncio.start_server(handle, host, port, reuse_address=True)
