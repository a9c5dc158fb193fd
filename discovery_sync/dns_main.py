"""`meshfed dns`: serve clusterset.local from an imports file.

For hosts where the agent writes `--imports-file` (VMs, the demo) and for
benchmarks: the same answer builder and server the agent embeds with `--dns`,
fed from the file, which is re-read when it changes.

    meshfed dns --imports imports.yaml --listen 127.0.0.1:5353 [--region R --zone Z]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

from discovery_sync import cli_common
from discovery_sync.dns.server import DnsServer
from discovery_sync.dns.zone import ZONE, compile_zone
from discovery_sync.errors import DiscoveryError, SourceError
from discovery_sync.imports_file import load
from discovery_sync.sources.poll import POLL_INTERVAL, file_stamp
from discovery_sync.types import ImportView, Locality

log = logging.getLogger("meshfed.dns")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="meshfed dns", description=__doc__.split("\n")[0])
    p.add_argument(
        "--imports",
        required=True,
        metavar="FILE",
        help="imports file written by `meshfed agent --imports-file`",
    )
    p.add_argument(
        "--listen",
        type=cli_common.host_port,
        default=("127.0.0.1", 5353),
        metavar="HOST:PORT",
        help="UDP and TCP address (default 127.0.0.1:5353)",
    )
    p.add_argument("--domain", default=ZONE, help="zone served (default clusterset.local.)")
    p.add_argument(
        "--region",
        type=cli_common.label_value,
        default=None,
        help="the clients' region, for nearest-first answers",
    )
    p.add_argument(
        "--zone",
        type=cli_common.label_value,
        default=None,
        help="the clients' zone, for nearest-first answers",
    )
    p.add_argument(
        "--udp-on-loop",
        action="store_true",
        help="answer UDP on the asyncio loop instead of a thread of its own",
    )
    return p


def read_view(path: str) -> ImportView:
    try:
        with open(path, encoding="utf-8") as fh:
            return load(fh.read())
    except OSError as err:
        raise SourceError(path, f"cannot read: {err.strerror}") from err


async def serve(args: argparse.Namespace, ready: asyncio.Event | None = None) -> int:
    locality = Locality(args.region or "", args.zone or "")
    view = read_view(args.imports)
    server = DnsServer(compile_zone(view, locality, args.domain), udp_thread=not args.udp_on_loop)
    bound = await server.start(*args.listen)
    print(
        f"meshfed dns: serving {args.domain} on {bound.host}:{bound.port} (UDP+TCP)",
        file=sys.stderr,
        flush=True,
    )
    if ready is not None:
        ready.set()
    stamp = file_stamp(args.imports)
    try:
        while True:
            await asyncio.sleep(POLL_INTERVAL)
            now = file_stamp(args.imports)
            if now == stamp:
                continue
            stamp = now
            try:
                server.update(compile_zone(read_view(args.imports), locality, args.domain))
            except DiscoveryError as err:
                log.error("imports file not reloaded, still serving the last one: %s", err)
    finally:
        await server.close()


def run(argv: Sequence[str]) -> int:
    args = parser().parse_args(list(argv))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        return cli_common.run_until_signal(serve(args))
    except DiscoveryError as err:
        print(f"meshfed dns: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
