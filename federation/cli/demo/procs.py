"""Child processes of the demo: start, wait until ready, stop, always clean up.

Every component runs as its own `meshfed` process, exactly as an operator would
run it, with its output in a log file under the demo's work dir (shown when a
step fails). Stopping is SIGTERM (the components drain), then SIGKILL after a
grace period.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

STOP_GRACE = 10.0  # seconds a component gets to drain on SIGTERM before SIGKILL


class DemoError(Exception):
    """A demo step failed; the message says which and where its log is."""


@dataclass
class Child:
    name: str
    argv: list[str]
    log: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                # -P: never let a module in the current directory shadow a library (3.11+)
                [sys.executable, "-P", "-m", "federation.cli", *self.argv],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C reaches the demo only; it stops children
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    async def stop(self) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(asyncio.to_thread(self.process.wait), STOP_GRACE)
            except TimeoutError:
                self.process.kill()
                await asyncio.to_thread(self.process.wait)
        return self.process.returncode


@dataclass
class Children:
    workdir: Path
    started: list[Child] = field(default_factory=list)

    def start(self, name: str, argv: Sequence[str]) -> Child:
        child = Child(name, list(argv), self.workdir / "logs" / f"{name}.log")
        child.start()
        self.started.append(child)
        return child

    async def stop_all(self) -> None:
        await asyncio.gather(*(c.stop() for c in reversed(self.started)))


async def wait_until(
    what: str,
    probe: Callable[[], Awaitable[bool]],
    timeout: float,
    child: Child | None = None,
    interval: float = 0.1,
) -> None:
    """Poll `probe` until true; DemoError naming `what` (and the child's log) otherwise."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        if child is not None and not child.running:
            raise DemoError(f"{what}: {child.name} exited; its log ({child.log}):\n{child.tail()}")
        with contextlib.suppress(Exception):
            if await probe():
                return
        if asyncio.get_running_loop().time() > deadline:
            log = f"; log {child.log}:\n{child.tail()}" if child else ""
            raise DemoError(f"{what}: not done after {timeout:.0f} s{log}")
        await asyncio.sleep(interval)
