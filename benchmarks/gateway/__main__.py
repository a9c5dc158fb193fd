"""``python -m benchmarks.gateway [--quick]``: meshfed against HAProxy and nginx, one run.

Targets (see :mod:`benchmarks.gateway.stack`): direct, haproxy (``req.ssl_sni``),
nginx (``ssl_preread``), meshfed (passthrough); direct-mtls, nginx-term (``stream``
terminating mTLS) and meshfed-term (terminate). Every round measures each figure
for every target in a freshly shuffled order (interleaved), ``--rounds`` times:

* keep-alive requests/s (wrk, 50 connections) and proxy CPU-us per request;
* new TLS connections/s (wrk, ``Connection: close``) and proxy CPU-us per connection;
* p50/p99 latency of one request on a kept-alive and on a new connection;
* MiB/s of a 64 MiB download (curl) and proxy CPU-us per MiB.

Throughputs are medians over rounds; latency percentiles pool every round's
samples; CPU figures are medians over rounds. Ratios are to direct (direct-mtls
for terminate) and to the best of HAProxy/nginx (nginx-term for terminate). The
issue's targets are checked at the end. Needs haproxy, nginx with
libnginx-mod-stream, wrk, curl and openssl on PATH.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from benchmarks.gateway.clients import cpu_seconds, latency, percentile, transfer, wrk
from benchmarks.gateway.stack import BIG, Bench, Target, start

KINDS = ("keepalive", "newconn", "latency", "transfer")
REFERENCE = {
    "passthrough": ("direct", ("haproxy", "nginx")),
    "terminate": ("direct-mtls", ("nginx-term",)),
}
HIGHER_IS_BETTER = {"ka_rps", "new_cps", "mib_s"}


def measure(bench: Bench, t: Target, kind: str, args: argparse.Namespace) -> dict[str, list[float]]:
    pid = bench.pid(t)
    tls = t.group == "passthrough"  # terminate targets: wrk speaks HTTP to the mTLS sidecar
    before = cpu_seconds(pid)
    out: dict[str, list[float]] = {}
    if kind == "keepalive":
        rps = wrk(t.wrk_port, args.seconds, tls=tls, new_connections=False)
        cpu = cpu_seconds(pid) - before
        out = {"ka_rps": [rps], "us_req": [cpu / (rps * args.seconds) * 1e6]}
    elif kind == "newconn":
        cps = wrk(t.wrk_port, args.seconds, tls=tls, new_connections=True)
        cpu = cpu_seconds(pid) - before
        out = {"new_cps": [cps], "us_conn": [cpu / (cps * args.seconds) * 1e6]}
    elif kind == "latency":
        kept, new = latency(bench, t, args.latency_requests, args.latency_connections)
        out = {"lat_ka": [x * 1e3 for x in kept], "lat_new": [x * 1e3 for x in new]}
    else:
        mib_s = transfer(bench, t, args.transfers)
        cpu = cpu_seconds(pid) - before
        out = {"mib_s": [mib_s], "us_mib": [cpu / (args.transfers * BIG / (1 << 20)) * 1e6]}
    if pid is None:
        out = {k: v for k, v in out.items() if not k.startswith("us_")}
    return out


def summarise(samples: dict[str, dict[str, list[float]]]) -> dict[str, dict[str, float]]:
    table: dict[str, dict[str, float]] = {}
    for name, figures in samples.items():
        row: dict[str, float] = {}
        for key, values in figures.items():
            if key.startswith("lat_"):
                row[key + "_p50"] = percentile(values, 0.50)
                row[key + "_p99"] = percentile(values, 0.99)
            else:
                row[key] = statistics.median(values)
        table[name] = row
    return table


def _ratio(value: float | None, ref: float | None) -> str:
    return "-" if value is None or not ref else f"{value / ref:.2f}"


def print_tables(table: dict[str, dict[str, float]], bench: Bench, names: list[str]) -> None:
    for group, (direct, refs) in REFERENCE.items():
        rows = [n for n in names if bench.targets[n].group == group]
        if not rows:
            continue
        present = [r for r in refs if r in table]

        def best(key: str, present: list[str] = present) -> float | None:
            vals = [table[r][key] for r in present if key in table[r]]
            if not vals:
                return None
            return max(vals) if key in HIGHER_IS_BETTER else min(vals)

        print(f"\n== {group} (ratios: x{direct} and x best of {'/'.join(refs)})")
        head = (
            f"{'target':13} {'ka req/s':>9} {'xdir':>5} {'xbest':>5} | {'new conn/s':>10}"
            f" {'xdir':>5} {'xbest':>5} | {'ka p50/p99 ms':>13} | {'new p50/p99 ms':>14}"
            f" | {'MiB/s':>6} {'xdir':>5} {'xbest':>5}"
        )
        print(head)
        d = table.get(direct, {})
        for n in rows:
            r = table[n]

            def g(k: str, r: dict[str, float] = r) -> float | None:
                return r.get(k)

            print(
                f"{n:13} {g('ka_rps') or 0:9.0f} {_ratio(g('ka_rps'), d.get('ka_rps')):>5}"
                f" {_ratio(g('ka_rps'), best('ka_rps')):>5} |"
                f" {g('new_cps') or 0:10.0f} {_ratio(g('new_cps'), d.get('new_cps')):>5}"
                f" {_ratio(g('new_cps'), best('new_cps')):>5} |"
                f" {g('lat_ka_p50') or 0:6.3f}/{g('lat_ka_p99') or 0:6.3f} |"
                f" {g('lat_new_p50') or 0:6.2f}/{g('lat_new_p99') or 0:7.2f} |"
                f" {g('mib_s') or 0:6.0f} {_ratio(g('mib_s'), d.get('mib_s')):>5}"
                f" {_ratio(g('mib_s'), best('mib_s')):>5}"
            )
        print(
            f"{'proxy CPU':13} {'us/req':>9} {'xbest':>5} | {'us/conn':>9} {'xbest':>5}"
            f" | {'us/MiB':>8} {'xbest':>5}"
        )
        for n in rows:
            r = table[n]
            if "us_req" not in r and "us_conn" not in r:
                continue
            print(
                f"{n:13} {r.get('us_req', 0):9.1f} {_ratio(r.get('us_req'), best('us_req')):>5} |"
                f" {r.get('us_conn', 0):9.1f} {_ratio(r.get('us_conn'), best('us_conn')):>5} |"
                f" {r.get('us_mib', 0):8.0f} {_ratio(r.get('us_mib'), best('us_mib')):>5}"
            )


def check_targets(table: dict[str, dict[str, float]]) -> None:
    """The issue's targets, each with the two numbers it compares."""
    checks: list[tuple[str, str, str, str, float]] = [
        ("passthrough CPU per MiB <= 1.0x nginx", "meshfed", "nginx", "us_mib", -1.0),
        ("passthrough CPU per request <= 1.2x nginx", "meshfed", "nginx", "us_req", -1.2),
        ("passthrough keep-alive req/s >= 0.9x nginx", "meshfed", "nginx", "ka_rps", 0.9),
        ("terminate keep-alive req/s >= 0.8x nginx-term", "meshfed-term", "nginx-term",
         "ka_rps", 0.8),
    ]  # fmt: skip
    print("\n== targets (issue 5)")
    for label, ours, ref, key, factor in checks:
        a, b = table.get(ours, {}).get(key), table.get(ref, {}).get(key)
        if a is None or b is None:
            print(f"  n/a   {label}")
            continue
        ratio = a / b
        ok = ratio <= -factor if factor < 0 else ratio >= factor
        print(f"  {'MET ' if ok else 'MISS'}  {label}: {a:.1f} vs {b:.1f} = {ratio:.2f}x")


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.gateway")
    ap.add_argument("--quick", action="store_true", help="one short round (about a minute)")
    ap.add_argument("--seconds", type=float, default=5, help="per wrk run")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--latency-requests", type=int, default=1000)
    ap.add_argument("--latency-connections", type=int, default=200)
    ap.add_argument("--transfers", type=int, default=3, help="64 MiB downloads per round")
    ap.add_argument("--targets", default="", help="comma-separated subset of target names")
    ap.add_argument("--relay", default="auto", choices=["auto", "splice", "asyncio"])
    ap.add_argument("--json", type=Path, help="also write the summary table here")
    args = ap.parse_args(argv)
    if args.quick:
        args.seconds, args.rounds = 2, 1
        args.latency_requests, args.latency_connections, args.transfers = 300, 50, 2
    for tool in ("haproxy", "nginx", "wrk", "openssl", "curl"):
        if shutil.which(tool) is None:
            print(f"missing {tool}: apt-get install -y haproxy nginx libnginx-mod-stream wrk curl")
            return 1
    work = Path(tempfile.mkdtemp(prefix="meshfed-bench-"))
    bench = start(work, meshfed_relay=args.relay)
    try:
        names = list(bench.targets)
        if args.targets:
            wanted = args.targets.split(",")
            unknown = set(wanted) - set(names)
            if unknown:
                print(f"unknown targets {sorted(unknown)}; known: {names}")
                return 2
            names = [n for n in names if n in wanted]
        samples: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        for t in bench.targets.values():  # warm-up: caches, connection pools, JIT-less paths
            if t.name in names:
                measure(bench, t, "latency", argparse.Namespace(**{**vars(args),
                        "latency_requests": 20, "latency_connections": 5}))  # fmt: skip
        started = time.monotonic()
        for rnd in range(args.rounds):
            for kind in KINDS:
                order = names[:]
                random.shuffle(order)
                for name in order:
                    got = measure(bench, bench.targets[name], kind, args)
                    for key, values in got.items():
                        samples[name][key].extend(values)
                    brief = ", ".join(f"{k}={statistics.median(v):.1f}" for k, v in got.items())
                    print(f"round {rnd + 1} {kind:9} {name:13} {brief}", flush=True)
                    time.sleep(0.2)
        table = summarise(samples)
        print(
            f"\n{args.rounds} round(s), wrk {args.seconds:g}s x 50 connections, latency"
            f" {args.latency_requests} kept-alive + {args.latency_connections} new,"
            f" {args.transfers} x 64 MiB per round; {time.monotonic() - started:.0f}s"
        )
        print_tables(table, bench, names)
        check_targets(table)
        if args.json:
            args.json.write_text(json.dumps(table, indent=2, sort_keys=True))
    finally:
        bench.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
