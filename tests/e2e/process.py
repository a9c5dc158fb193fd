"""The e2e harness's processes: a logged `meshfed` process (`Proc`), polling until a
condition holds (`wait_until`) and the error a failed step raises (`E2EError`)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


class E2EError(AssertionError):
    """A harness step failed; the message names it and shows the component's log."""


@dataclass
class Proc:
    name: str
    argv: list[str]
    log: Path
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> Proc:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as out:
            out.write(f"\n=== start {time.strftime('%H:%M:%S')}: {' '.join(self.argv)}\n".encode())
            out.flush()
            self.process = subprocess.Popen(
                self.argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                cwd=ROOT,
                env={
                    **os.environ,
                    "PYTHONUNBUFFERED": "1",
                    "PYTHONPATH": str(ROOT),
                    **self.env,
                },
            )
        return self

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, sig: signal.Signals) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(sig)

    def kill(self) -> None:
        """SIGKILL (a crash) and reap."""
        self.signal(signal.SIGKILL)
        if self.process is not None:
            self.process.wait()

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM (drain), SIGKILL after `grace`."""
        if self.process is None:
            return
        self.signal(signal.SIGTERM)
        try:
            self.process.wait(grace)
        except subprocess.TimeoutExpired:
            self.kill()

    def tail(self, lines: int = 25) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def wait_until(
    what: str, probe: Callable[[], bool], timeout: float, proc: Proc | None = None
) -> float:
    """Poll `probe` until true; returns the seconds it took. E2EError otherwise."""
    start = time.monotonic()
    while True:
        if proc is not None and not proc.running:
            raise E2EError(f"{what}: {proc.name} exited; its log:\n{proc.tail()}")
        with contextlib.suppress(Exception):
            if probe():
                return time.monotonic() - start
        if time.monotonic() - start > timeout:
            log = f"; {proc.name}'s log:\n{proc.tail()}" if proc else ""
            raise E2EError(f"{what}: not done after {timeout:.0f} s{log}")
        time.sleep(0.1)
