"""`meshfed serve` as a real child process for tests: start on free loopback ports,
wait until /readyz answers, stop with SIGTERM (which must exit 0)."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import httpx

from tests.servers.ports import clean_env, serve_argv, serve_ports

ROOT = Path(__file__).resolve().parents[2]


def spawn_serve(
    data_dir: Path, *extra: str, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[str], str]:
    """(process, REST base URL); its output (stdout and stderr) is on `proc.stdout`."""
    api_port, grpc_port = serve_ports()
    proc = subprocess.Popen(
        serve_argv(data_dir, api_port, grpc_port, *extra),
        cwd=ROOT,
        env=clean_env() if env is None else env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return proc, f"http://127.0.0.1:{api_port}"


def wait_serve_ready(proc: subprocess.Popen[str], base: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if proc.poll() is not None:
            out, _ = proc.communicate()
            raise AssertionError(f"serve exited with {proc.returncode}: {out}")
        assert time.monotonic() < deadline, "serve never became ready"
        time.sleep(0.05)


def stop_serve(proc: subprocess.Popen[str]) -> str:
    """SIGTERM; returns the output. A clean drain exits 0."""
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    return out
