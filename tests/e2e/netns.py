"""Clusters as Linux network namespaces: build, break and mend the links between them.

Topology (one run): four namespaces named `mfe2e-<pid>-<node>` — `a`, `b`, `c` (the
clusters) and `reg` (the registry) — each with one address on its loopback device,
joined full-mesh by point-to-point veth pairs (`to-b` in `a` is the peer of `to-a` in
`b`), with a /32 route per peer. Nothing is connected to the host's own namespace, so
the namespaces of parallel runs (and the same addresses in them) never meet, and no
packet can leave the machine. Addresses come from 198.18.0.0/15 (RFC 2544: reserved
for network benchmark tests).

A partition is `ip link set down` on one end of a pair: the other side keeps its
route on a link without carrier, so its packets are silently dropped (a blackhole, as
a cloud partition looks to the side that still sends), while the downed side gets
"network unreachable". Healing sets the link up and puts the routes back.

Test code enters a namespace per thread with setns(2) (`NsThread`): sockets made on
that thread belong to the namespace for their whole life, so the test process can
reach every namespace without host routes. Child processes start with
`ip netns exec`.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import subprocess
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")

PREFIX = "mfe2e-"
CLONE_NEWNET = 0x40000000
NODES = ("reg", "a", "b", "c")
ADDRESSES = {"a": "198.18.0.1", "b": "198.18.0.2", "c": "198.18.0.3", "reg": "198.18.0.10"}
PAIRS = (("a", "b"), ("a", "c"), ("b", "c"), ("a", "reg"), ("b", "reg"), ("c", "reg"))

_libc = ctypes.CDLL(None, use_errno=True)


def can_run() -> str:
    """'' when this process can build namespaces, else the reason it cannot."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, veth pairs); CI runs as root"
    try:
        subprocess.run(["ip", "-V"], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError):
        return "needs iproute2 (`ip`): apt-get install -y iproute2"
    return ""


def enter(ns: str) -> None:
    """Move the calling thread into network namespace `ns`."""
    fd = os.open(f"/run/netns/{ns}", os.O_RDONLY)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({ns}): {os.strerror(err)}")
    finally:
        os.close(fd)


class NsThread:
    """One worker thread living in a namespace; `call` runs a function there."""

    def __init__(self, ns: str) -> None:
        self.ns = ns
        self._pool = ThreadPoolExecutor(1, initializer=enter, initargs=(ns,))

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return self._pool.submit(fn, *args, **kwargs).result()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def ip(*args: str) -> str:
    done = subprocess.run(["ip", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale() -> list[str]:
    """Delete namespaces left by earlier runs whose process is gone (a SIGKILLed run)."""
    removed = []
    for line in ip("netns", "list").splitlines():
        name = line.split()[0] if line.strip() else ""
        m = re.fullmatch(rf"{PREFIX}(\d+)-\w+", name)
        if m and not _pid_alive(int(m.group(1))):
            with contextlib.suppress(RuntimeError):
                ip("netns", "del", name)
                removed.append(name)
    return removed


class Net:
    """The namespaces and links of one run."""

    def __init__(self, tag: str | None = None) -> None:
        self.tag = tag or f"{PREFIX}{os.getpid()}"
        self.created: list[str] = []
        self.threads: dict[str, NsThread] = {}

    def ns(self, node: str) -> str:
        return f"{self.tag}-{node}"

    def thread(self, node: str) -> NsThread:
        if node not in self.threads:
            self.threads[node] = NsThread(self.ns(node))
        return self.threads[node]

    def up(self) -> None:
        remove_stale()
        for node in NODES:
            ip("netns", "add", self.ns(node))
            self.created.append(self.ns(node))
            ip("-n", self.ns(node), "link", "set", "lo", "up")
            ip("-n", self.ns(node), "addr", "add", f"{ADDRESSES[node]}/32", "dev", "lo")
        for x, y in PAIRS:
            ip("link", "add", f"to-{y}", "netns", self.ns(x), "type", "veth",
               "peer", "name", f"to-{x}", "netns", self.ns(y))  # fmt: skip
            for here, there in ((x, y), (y, x)):
                ip("-n", self.ns(here), "link", "set", f"to-{there}", "up")
        for x, y in PAIRS:
            self._route(x, y)
            self._route(y, x)

    def _route(self, here: str, there: str) -> None:
        ip("-n", self.ns(here), "route", "replace", f"{ADDRESSES[there]}/32",
           "dev", f"to-{there}", "src", ADDRESSES[here])  # fmt: skip

    def cut(self, x: str, y: str) -> None:
        """Partition x and y: `ip link set down` on y's end (x's packets vanish)."""
        ip("-n", self.ns(y), "link", "set", f"to-{x}", "down")

    def heal(self, x: str, y: str) -> None:
        ip("-n", self.ns(y), "link", "set", f"to-{x}", "up")
        self._route(x, y)
        self._route(y, x)

    def down(self) -> None:
        for t in self.threads.values():
            t.close()
        self.threads.clear()
        for name in reversed(self.created):
            with contextlib.suppress(RuntimeError):
                ip("netns", "del", name)
        self.created.clear()

    def exec_argv(self, node: str, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.ns(node), *argv]
