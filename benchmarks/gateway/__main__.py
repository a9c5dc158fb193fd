"""Keep-alive TLS requests/s and proxy CPU per request, all targets interleaved.

Same client (wrk, 50 connections, HTTPS with SNI ``localhost``) and the same
backend (nginx serving a small file over TLS) for every target:

* direct      -- wrk straight to the backend (the physical limit)
* haproxy     -- ``mode tcp`` routing on ``req.ssl_sni``
* nginx       -- ``stream`` with ``ssl_preread`` (passthrough)
* meshfed-splice / meshfed-asyncio -- meshfed passthrough with each relay

Each round runs every target once, in a shuffled order, for ``--seconds``; the
table shows medians over ``--rounds`` and ratios to direct and to the best of
HAProxy/nginx. Proxy CPU is utime+stime of the proxy process from /proc.
Needs: haproxy, nginx (+ libnginx-mod-stream), wrk, openssl on PATH.
Not covered yet: terminate-mode targets (wrk cannot present a client
certificate), new-connection rates, latency percentiles and 64 MiB transfers.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"port {port} never opened")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (proc(5))


def run_wrk(port: int, seconds: int) -> float:
    out = subprocess.run(
        ["wrk", "-t2", "-c50", f"-d{seconds}s", f"https://localhost:{port}/"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not match:
        raise RuntimeError(out)
    return float(match.group(1))


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.gateway")
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    for tool in ("haproxy", "nginx", "wrk", "openssl"):
        if shutil.which(tool) is None:
            print(f"missing {tool}: apt-get install -y haproxy nginx libnginx-mod-stream wrk")
            return 1
    work = Path(tempfile.mkdtemp(prefix="meshfed-bench-"))
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            str(work / "key.pem"),
            "-out",
            str(work / "cert.pem"),
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost",
        ],
        check=True,
        capture_output=True,
    )
    (work / "index.html").write_text("x" * 64)
    ports = {
        name: free_port()
        for name in ("direct", "haproxy", "nginx", "meshfed-splice", "meshfed-asyncio")
    }
    backend = ports["direct"]
    (work / "backend.conf").write_text(f"""
daemon off; master_process off; worker_processes 1;
error_log {work}/backend.err; pid {work}/backend.pid;
events {{ worker_connections 4096; }}
http {{ access_log off; server {{ listen 127.0.0.1:{backend} ssl; ssl_certificate {work}/cert.pem;
  ssl_certificate_key {work}/key.pem; keepalive_requests 1000000; root {work}; }} }}
""")
    (work / "proxy.conf").write_text(f"""
load_module /usr/lib/nginx/modules/ngx_stream_module.so;
daemon off; master_process off; worker_processes 1;
error_log {work}/proxy.err; pid {work}/proxy.pid;
events {{ worker_connections 4096; }}
stream {{ map $ssl_preread_server_name $up {{ localhost 127.0.0.1:{backend}; }}
  server {{ listen 127.0.0.1:{ports["nginx"]}; ssl_preread on; proxy_pass $up; }} }}
""")
    (work / "haproxy.cfg").write_text(f"""
global
  nbthread 1
defaults
  mode tcp
  timeout connect 5s
  timeout client 60s
  timeout server 60s
frontend fe
  bind 127.0.0.1:{ports["haproxy"]}
  tcp-request inspect-delay 5s
  tcp-request content accept if {{ req.ssl_hello_type 1 }}
  use_backend be if {{ req.ssl_sni -i localhost }}
backend be
  server s1 127.0.0.1:{backend}
""")
    for impl in ("splice", "asyncio"):
        (work / f"routes-{impl}.yaml").write_text(
            f'routes:\n  - {{sni: localhost, backend: "127.0.0.1:{backend}", mode: passthrough}}\n'
        )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        procs["direct"] = subprocess.Popen(
            ["nginx", "-c", str(work / "backend.conf"), "-p", str(work)]
        )
        procs["nginx"] = subprocess.Popen(
            ["nginx", "-c", str(work / "proxy.conf"), "-p", str(work)]
        )
        procs["haproxy"] = subprocess.Popen(["haproxy", "-db", "-f", str(work / "haproxy.cfg")])
        for impl in ("splice", "asyncio"):
            procs[f"meshfed-{impl}"] = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "eastwest_gateway.main",
                    "--relay",
                    impl,
                    "--cluster",
                    "bench",
                    "--routes",
                    str(work / f"routes-{impl}.yaml"),
                    "--listen",
                    f"127.0.0.1:{ports[f'meshfed-{impl}']}",
                    "--log-level",
                    "WARNING",
                ],
                env=env,
            )
        for port in ports.values():
            wait_port(port)
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in ports}
        for rnd in range(args.rounds):
            order = list(ports)
            random.shuffle(order)
            for name in order:
                pid = procs[name].pid
                before = cpu_seconds(pid)
                rps = run_wrk(ports[name], args.seconds)
                cpu = cpu_seconds(pid) - before
                us_per_req = cpu / (rps * args.seconds) * 1e6 if name != "direct" else 0.0
                results[name].append((rps, us_per_req))
                print(
                    f"round {rnd + 1} {name:16} {rps:10.0f} req/s "
                    f"{us_per_req:6.1f} proxy CPU-us/req",
                    flush=True,
                )
        med = {
            n: (statistics.median(r[0] for r in v), statistics.median(r[1] for r in v))
            for n, v in results.items()
        }
        best = max(("haproxy", "nginx"), key=lambda n: med[n][0])
        print(
            f"\nkeep-alive HTTPS, 50 connections, median of {args.rounds} x {args.seconds}s;"
            f" best reference: {best}"
        )
        print(
            f"{'target':16} {'req/s':>10} {'x direct':>9} {'x best':>7}"
            f" {'CPU-us/req':>11} {'x best CPU':>10}"
        )
        for name, (rps, us) in med.items():
            cpu_ratio = f"{us / med[best][1]:10.2f}" if name != "direct" else f"{'-':>10}"
            print(
                f"{name:16} {rps:10.0f} {rps / med['direct'][0]:9.2f}"
                f" {rps / med[best][0]:7.2f} {us:11.1f} {cpu_ratio}"
            )
    finally:
        for p in procs.values():
            p.terminate()
        for p in procs.values():
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
