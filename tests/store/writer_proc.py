"""A store writer run as a separate process by the contract suite.

    python writer_proc.py URL increment NAME COUNT
        Increment the `sequence` of TrustDomain NAME COUNT times with optimistic
        concurrency (read, update at the revision read, retry on Conflict).
        Prints "done <increments> <conflicts>".

    python writer_proc.py URL replace COUNT
        Forever alternate the endpoints of shop/cart@east between set 1 and set 0
        (COUNT endpoints each, disjoint addresses) with `replace_endpoints`, starting
        with the set the store does not hold; prints "begin <set>" before and
        "committed <revision> <set>" after each replacement. The parent kills it.

Both modes print "ready" once the store is open, then wait for a line on stdin so
that several processes start writing at the same moment.
"""

from __future__ import annotations

import asyncio
import sys

from federation.errors import Conflict
from federation.model import Endpoint, Port
from federation.store import open_store

CLUSTER, NAMESPACE, SERVICE = "east", "shop", "cart"


def address(tag: int, i: int) -> str:
    return f"10.{tag}.{i // 256}.{i % 256}"


def endpoint_set(tag: int, count: int) -> list[Endpoint]:
    return [
        Endpoint(CLUSTER, NAMESPACE, SERVICE, address(tag, i), (Port(8080),), zone="z1")
        for i in range(count)
    ]


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def main(argv: list[str]) -> int:
    url, mode, *args = argv
    store = await open_store(url)
    try:
        if mode == "replace":
            sets = [endpoint_set(tag, int(args[0])) for tag in (0, 1)]
        say("ready")
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        if mode == "increment":
            name, count = args[0], int(args[1])
            done = conflicts = 0
            while done < count:
                current = await store.trust_domains.get(name)
                record = current.record
                bumped = type(record)(
                    record.name,
                    record.roots_pem,
                    record.sequence + 1,
                    record.refresh_hint_seconds,
                )
                try:
                    await store.trust_domains.update(bumped, current.revision)
                except Conflict:
                    conflicts += 1
                    continue
                done += 1
            say(f"done {done} {conflicts}")
        elif mode == "replace":
            # start with the set the store does not hold, so every replacement is a full swap
            current = await store.endpoints.list(f"{NAMESPACE}/{SERVICE}/{CLUSTER}/")
            tag = 0 if current and current[0].record.address.startswith("10.1.") else 1
            while True:
                say(f"begin {tag}")
                rev = await store.replace_endpoints(CLUSTER, NAMESPACE, SERVICE, sets[tag])
                say(f"committed {rev} {tag}")
                tag = 1 - tag
        else:
            raise SystemExit(f"unknown mode {mode!r}")
    finally:
        await store.close()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
