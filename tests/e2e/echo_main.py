"""A cluster's workload for the drills: the demo's echo server, run inside a namespace.

`python -m tests.e2e.echo_main CLUSTER HOST PORT`: answers each line with
`CLUSTER <line>`, so a reply names the cluster that served it.
"""

from __future__ import annotations

import asyncio
import sys

from federation.cli.demo.echo import start_echo


async def main(cluster: str, host: str, port: int) -> None:
    server = await start_echo(cluster, host, port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
