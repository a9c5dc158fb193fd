"""The load generators and the CPU meter, the same for every target.

* keep-alive requests/s and new TLS connections/s: wrk, 2 threads, 50 connections
  (``Connection: close`` for the new-connection rate: one full handshake per request);
* latency of one request on a kept-alive and on a new connection: a sequential
  Python client (its own cost is the same for every target);
* 64 MiB transfer: curl, one download per repetition;
* proxy CPU: utime + stime of the proxy process from ``/proc/<pid>/stat`` (proc(5)),
  all threads included.
"""

from __future__ import annotations

import os
import re
import socket
import ssl
import statistics
import subprocess
import time
from pathlib import Path

from benchmarks.gateway.stack import BIG, SNI, TERM_SNI, Bench, Target

CLK_TCK = os.sysconf("SC_CLK_TCK")
CONNECTIONS = 50


def cpu_seconds(pid: int | None) -> float:
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def wrk(port: int, seconds: float, *, tls: bool, new_connections: bool) -> float:
    """Requests/s; with ``new_connections`` every request is on a new connection."""
    scheme = "https" if tls else "http"
    cmd = ["wrk", "-t2", f"-c{CONNECTIONS}", f"-d{seconds}s"]
    if new_connections:
        cmd += ["-H", "Connection: close"]
    out = subprocess.run(
        [*cmd, f"{scheme}://localhost:{port}/"], capture_output=True, text=True, check=True
    ).stdout
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not match:
        raise RuntimeError(out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if errors and sum(int(g) for g in errors.groups()) > 0:
        print(f"  (wrk reported {errors.group(0)} on port {port})", flush=True)
    return float(match.group(1))


def client_context(bench: Bench, target: Target) -> tuple[ssl.SSLContext, str]:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.load_verify_locations(bench.work / "ca.pem")
    if target.group == "terminate":
        ctx.load_cert_chain(bench.work / "client.pem", bench.work / "client.key")
        return ctx, TERM_SNI
    return ctx, SNI


REQUEST = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"


def _one_request(sock: ssl.SSLSocket) -> None:
    sock.sendall(REQUEST)
    buf = b""
    while b"\r\n\r\n" not in buf:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("closed mid-response")
        buf += data
    head, _, body = buf.partition(b"\r\n\r\n")
    match = re.search(rb"(?i)content-length:\s*(\d+)", head)
    length = int(match.group(1)) if match else 0
    while len(body) < length:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("closed mid-body")
        body += data


def latency(
    bench: Bench, target: Target, n_kept: int, n_new: int
) -> tuple[list[float], list[float]]:
    """Seconds per request: (on one kept-alive connection, each on a new connection)."""
    ctx, sni = client_context(bench, target)
    addr = ("127.0.0.1", target.port)

    def connect() -> ssl.SSLSocket:
        raw = socket.create_connection(addr, timeout=10)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return ctx.wrap_socket(raw, server_hostname=sni)

    kept: list[float] = []
    with connect() as sock:
        _one_request(sock)  # warm
        for _ in range(n_kept):
            t0 = time.perf_counter()
            _one_request(sock)
            kept.append(time.perf_counter() - t0)
    new: list[float] = []
    for _ in range(n_new):
        t0 = time.perf_counter()
        with connect() as sock:
            _one_request(sock)
        new.append(time.perf_counter() - t0)
    return kept, new


def transfer(bench: Bench, target: Target, reps: int) -> float:
    """Median MiB/s of ``reps`` downloads of the 64 MiB file."""
    sni = TERM_SNI if target.group == "terminate" else SNI
    cmd = [
        "curl", "-sS", "--fail", "-o", "/dev/null", "-w", "%{speed_download} %{size_download}",
        "--cacert", str(bench.work / "ca.pem"),
        "--resolve", f"{sni}:{target.port}:127.0.0.1",
    ]  # fmt: skip
    if target.group == "terminate":
        cmd += ["--cert", str(bench.work / "client.pem"), "--key", str(bench.work / "client.key")]
    speeds = []
    for _ in range(reps):
        out = subprocess.run(
            [*cmd, f"https://{sni}:{target.port}/big.bin"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        if int(float(out[1])) != BIG:
            raise RuntimeError(f"{target.name}: short transfer {out[1]} bytes")
        speeds.append(float(out[0]) / (1 << 20))
    return statistics.median(speeds)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]
