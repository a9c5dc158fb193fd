"""DNS queries/s: `meshfed dns` side by side with NSD serving the same zone (dnsperf).

Both servers get the same records: the zone meshfed compiles from an import view
of 1,000 ClusterSetIP services and 100 headless services (3 clusters, 2 ready
endpoints each) is written out as an NSD zone file. dnsperf replays one query
mix against each in turn (A hits, SRV with glue, per-endpoint names, NXDOMAIN),
alternating rounds so both see the same machine noise. NSD runs with one server
process, like meshfed's one asyncio loop. Reported: queries/s per server and
round, the median ratio meshfed/NSD (target >= 0.5).

    .venv/bin/python -m benchmarks.discovery.dns [--seconds 10] [--rounds 3]

Needs `dnsperf` and `nsd` (Debian: apt-get install dnsperf nsd).
"""

from __future__ import annotations

import argparse
import json
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
from datetime import UTC, datetime
from pathlib import Path

from discovery_sync.dns.zone import compile_zone
from discovery_sync.imports_file import dump
from discovery_sync.types import ClusterInfo, ImportedService, ImportView, Locality
from federation.model import Endpoint, Port, ServiceKey

CALLER = Locality("r1", "r1-a")


def build_view(services: int = 1000, headless: int = 100) -> ImportView:
    clusters = {
        "c1": ClusterInfo("c1", Locality("r1", "r1-a")),
        "c2": ClusterInfo("c2", Locality("r1", "r1-b")),
        "c3": ClusterInfo("c3", Locality("r2", "r2-a")),
    }
    http = Port(8080, "TCP", "http")
    out: dict[ServiceKey, ImportedService] = {}
    for i in range(services):
        key = ServiceKey(f"ns{i % 20}", f"svc{i}")
        ep = Endpoint(
            "c1", key.namespace, key.name, f"10.1.{i // 250}.{i % 250 + 1}", (http,), "r1-a"
        )
        out[key] = ImportedService(
            key, (http,), ("c1",), (ep,), ips=(f"198.18.{i // 250}.{i % 250 + 1}",)
        )
    for i in range(headless):
        key = ServiceKey(f"ns{i % 20}", f"db{i}")
        eps = tuple(
            Endpoint(
                c,
                key.namespace,
                key.name,
                f"10.{2 + n}.{i}.{j + 1}",
                (http,),
                clusters[c].locality.zone,
            )
            for n, c in enumerate(clusters)
            for j in range(2)
        )
        out[key] = ImportedService(key, (http,), tuple(clusters), eps, headless=True)
    return ImportView("bench", out, clusters, 1)


def zone_file(view: ImportView) -> str:
    zone = compile_zone(view, CALLER)
    lines = [f"$ORIGIN {zone.origin.to_text()}", "$TTL 5"]
    for _name, rrsets in sorted(zone.nodes.items()):
        for rrset in rrsets.values():
            lines.append(rrset.to_text())
    return "\n".join(lines) + "\n"


def queries(view: ImportView, count: int = 20000) -> str:
    rng = random.Random(6)
    keys = sorted(view.services, key=str)
    out = []
    for _ in range(count):
        key = rng.choice(keys)
        svc = view.services[key]
        base = f"{key.name}.{key.namespace}.svc.clusterset.local"
        roll = rng.random()
        if roll < 0.6:
            out.append(f"{base} A")
        elif roll < 0.75:
            out.append(f"_http._tcp.{base} SRV")
        elif roll < 0.85 and svc.headless:
            ep = rng.choice(svc.endpoints)
            out.append(f"{ep.address.replace('.', '-')}.{ep.cluster}.{base} A")
        elif roll < 0.95:
            out.append(f"nope{rng.randrange(10**6)}.{key.namespace}.svc.clusterset.local A")
        else:
            out.append(f"{base} AAAA")
    return "\n".join(out) + "\n"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_udp(port: int, timeout: float = 10.0) -> None:
    import dns.message
    import dns.query

    deadline = time.monotonic() + timeout
    q = dns.message.make_query("dns-version.clusterset.local", "TXT")
    while time.monotonic() < deadline:
        try:
            dns.query.udp(q, "127.0.0.1", port=port, timeout=0.2)
            return
        except Exception:
            time.sleep(0.1)
    raise RuntimeError(f"no DNS server answering on port {port}")


def dnsperf(port: int, qfile: Path, seconds: int) -> dict[str, float]:
    out = subprocess.run(
        [
            "dnsperf",
            "-s",
            "127.0.0.1",
            "-p",
            str(port),
            "-d",
            str(qfile),
            "-l",
            str(seconds),
            "-c",
            "4",
            "-q",
            "200",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    qps = float(re.search(r"Queries per second:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    lost = re.search(r"Queries lost:\s+(\d+)", out)
    latency = re.search(r"Average Latency \(s\):\s+([\d.]+)", out)
    return {
        "qps": qps,
        "lost": float(lost.group(1)) if lost else 0.0,
        "avg_latency_ms": float(latency.group(1)) * 1000 if latency else 0.0,
    }


def start_meshfed(tmp: Path, view: ImportView, *extra: str) -> tuple[subprocess.Popen[bytes], int]:
    imports = tmp / "imports.yaml"
    imports.write_text(dump(view))
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "discovery_sync.dns_main",
            "--imports",
            str(imports),
            "--listen",
            f"127.0.0.1:{port}",
            "--region",
            CALLER.region,
            "--zone",
            CALLER.zone,
            *extra,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_udp(port)
    return proc, port


def start_nsd(tmp: Path, view: ImportView) -> tuple[subprocess.Popen[bytes], int]:
    (tmp / "clusterset.local.zone").write_text(zone_file(view))
    port = free_port()
    conf = tmp / "nsd.conf"
    conf.write_text(f"""server:
    ip-address: 127.0.0.1@{port}
    server-count: 1
    username: ""
    chroot: ""
    zonesdir: "{tmp}"
    database: ""
    zonelistfile: "{tmp}/zone.list"
    pidfile: "{tmp}/nsd.pid"
    xfrdfile: "{tmp}/xfrd.state"
    xfrdir: "{tmp}"
    logfile: "{tmp}/nsd.log"
    verbosity: 0
    hide-version: yes
    rrl-ratelimit: 0            # response rate limiting (on by default) would cap one client
    rrl-whitelist-ratelimit: 0
remote-control:
    control-enable: no
zone:
    name: clusterset.local
    zonefile: clusterset.local.zone
""")
    proc = subprocess.Popen(
        ["nsd", "-d", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    wait_udp(port)
    return proc, port


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=int, default=10)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args(argv)
    for tool in ("dnsperf", "nsd"):
        if shutil.which(tool) is None:
            print(f"{tool} not found (apt-get install dnsperf nsd)", file=sys.stderr)
            return 2
    view = build_view()
    results: dict[str, list[dict[str, float]]] = {"meshfed": [], "meshfed_loop": [], "nsd": []}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        qfile = tmp / "queries.txt"
        qfile.write_text(queries(view))
        procs = {
            "meshfed": start_meshfed(tmp, view),  # UDP on a thread of its own (the default)
            "meshfed_loop": start_meshfed(tmp, view, "--udp-on-loop"),  # as the agent runs it
            "nsd": start_nsd(tmp, view),
        }
        try:
            for _ in range(args.rounds):
                for name, (_, port) in procs.items():
                    results[name].append(dnsperf(port, qfile, args.seconds))
        finally:
            for proc, _ in procs.values():
                proc.terminate()
                proc.wait(10)
    ratios = [m["qps"] / n["qps"] for m, n in zip(results["meshfed"], results["nsd"], strict=True)]
    loop_ratios = [
        m["qps"] / n["qps"] for m, n in zip(results["meshfed_loop"], results["nsd"], strict=True)
    ]
    report = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "zone": {"services": 1000, "headless": 100, "names": len(compile_zone(view, CALLER).nodes)},
        "seconds_per_run": args.seconds,
        "meshfed": results["meshfed"],
        "meshfed_loop": results["meshfed_loop"],
        "nsd": results["nsd"],
        "ratio_median": round(statistics.median(ratios), 3),
        "ratios": [round(r, 3) for r in ratios],
        "loop_ratio_median": round(statistics.median(loop_ratios), 3),
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
