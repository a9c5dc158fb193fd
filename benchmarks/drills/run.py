"""Repeat drills 3, 4 and 7 of issue 9 and print (or write) their figures.

`python -m benchmarks.drills [--runs N] [--drills 3,4,7] [--write-docs] [--json FILE]`
from the repository root, as root (network namespaces, veth pairs); about 5 minutes
for N = 5. `--from-json FILE` prints (and with `--write-docs` writes) the figures a
previous `--json FILE` saved, without running anything.

Each run puts `a` under the drills' load (20 requests/s, one request per new
connection, client timeout 10 s; tests/e2e/harness.py), waits 2 s, strikes, holds
the fault, repairs it and waits until `a` is served by `b` again, so every run starts
from the same healthy federation:

* drill 3: SIGKILL of `b`'s gateway, held 6 s; restarted with its state dir;
* drill 4: `ip link set down` on `b`'s end of the a<->b veth (`a`'s packets to `b`
  vanish), held 10 s; healed;
* drill 7 (a second federation, its registry on a 3-member etcd in the registry's
  namespace): SIGKILL of the etcd leader, held 20 s (longer than a lease), then the
  member is restarted; traffic is expected to stay at `b` throughout.

Per run: `first` = fault to the first reply from the fallback `c` (drill 7: to the
first successful registry write, through the new leader); `all` = fault to the send
time after which every request is answered by `c` within 1 s (tests/e2e
`shift_figures`); `lost` = requests of the run not answered (10 s client timeout),
of which `in flight` were already open when the fault struck. Baseline: the same load
for 15 s on each federation with no fault.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import shutil
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

from benchmarks.drills.figures import (
    DRILLS,
    Baseline,
    RunFigures,
    per_run_lines,
    replace_section,
    table,
)
from tests.e2e.harness import (
    E2EError,
    Federation,
    Load,
    Sample,
    counts,
    latency_p,
    shift_figures,
)
from tests.e2e.netns import Net, can_run
from tests.servers.etcd import EtcdCluster, EtcdStartError

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "performance.md"
EXIT_USAGE = 2
PRE_FAULT = 2.0  # s of load before each fault
HOLD = {"3": 6.0, "4": 10.0, "7": 20.0}  # s each fault is held (7: > the 15 s lease TTL)
BASELINE = 15.0  # s of load with no fault
SETTLE_AFTER_REPAIR = 2.0  # s of load at b after a repair before the run ends
RETURN_TIMEOUT = 90.0  # traffic back at b after a repair


def log(message: str) -> None:
    print(f"[drills {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def lost_of(samples: list[Sample], fault_start: float, fault_done: float) -> tuple[int, int]:
    """(requests lost, of which in flight at the fault: sent before it, open during it)."""
    lost = [s for s in samples if s.served_by is None]
    in_flight = [s for s in lost if s.sent < fault_done and s.done > fault_start]
    return len(lost), len(in_flight)


def finish(
    drill: str, n: int, load: Load, event: float, event_done: float, until: float
) -> RunFigures:
    samples = list(load.samples)
    moved = shift_figures(samples, event, "c", until)
    lost, in_flight = lost_of(samples, event, event_done)
    return RunFigures(
        drill=drill,
        run=n,
        requests=len(samples),
        lost=lost,
        lost_in_flight=in_flight,
        first_s=moved["shift_s"],
        all_s=moved["settled_s"],
        slowest_s=float(moved["max_latency_s"]),
        served_by=counts(samples),
    )


def drill3(fed: Federation, n: int) -> RunFigures:
    with fed.load("a") as load:
        time.sleep(PRE_FAULT)
        killed_at = time.monotonic()
        fed.procs["gateway-b"].kill()
        kill_done = time.monotonic()
        try:
            load.wait_served("c", killed_at, 15)
            time.sleep(max(0.0, killed_at + HOLD["3"] - time.monotonic()))
        finally:
            restart_at = time.monotonic()
            fed.start_gateway("b")  # same state dir: saved SVID, the token is not spent
        back_s = load.wait_served("b", restart_at, RETURN_TIMEOUT)
        time.sleep(SETTLE_AFTER_REPAIR)
    run = finish("3", n, load, killed_at, kill_done, restart_at)
    run.extra["back_at_b_after_restart_s"] = round(back_s, 2)
    return run


def drill4(fed: Federation, net: Net, n: int) -> RunFigures:
    with fed.load("a") as load:
        time.sleep(PRE_FAULT)
        cut_at = time.monotonic()
        net.cut("a", "b")
        cut_done = time.monotonic()  # `ip link set down` has returned: the link is dark
        try:
            load.wait_served("c", cut_at, 15)
            time.sleep(max(0.0, cut_at + HOLD["4"] - time.monotonic()))
        finally:
            healed_at = time.monotonic()
            net.heal("a", "b")
        back_s = load.wait_served("b", healed_at, RETURN_TIMEOUT)
        time.sleep(SETTLE_AFTER_REPAIR)
    run = finish("4", n, load, cut_at, cut_done, healed_at)
    run.extra["back_at_b_after_heal_s"] = round(back_s, 2)
    return run


def drill7(fed: Federation, net: Net, etcd: EtcdCluster, n: int) -> RunFigures:
    reg = net.thread("reg")
    gaps: list[float] = []
    with fed.load("a") as load:
        time.sleep(PRE_FAULT)
        leader = reg.call(etcd.leader)
        killed_at = time.monotonic()
        reg.call(etcd.kill, leader)
        kill_done = time.monotonic()
        new_leader = reg.call(etcd.leader)
        election_s = time.monotonic() - killed_at
        fed.expect("POST", "/api/v1/clusters/a/join-tokens", 201, {})  # a registry write
        write_s = time.monotonic() - killed_at
        while time.monotonic() - killed_at < HOLD["7"]:
            if fed.endpoint_clusters() != {"b", "c"}:
                gaps.append(round(time.monotonic() - killed_at, 2))
            time.sleep(0.5)
        reg.call(etcd.restart, leader)
        time.sleep(SETTLE_AFTER_REPAIR)
    samples = list(load.samples)
    after = [s for s in samples if s.sent >= killed_at]
    lost, in_flight = lost_of(samples, killed_at, kill_done)
    return RunFigures(
        drill="7",
        run=n,
        requests=len(samples),
        lost=lost,
        lost_in_flight=in_flight,
        first_s=round(write_s, 3),
        all_s=None,
        slowest_s=round(max((s.latency for s in after), default=0.0), 3),
        served_by=counts(samples),
        extra={
            "new_leader_s": round(election_s, 3),
            "leader_changed": new_leader.name != leader.name,
            "endpoint_gaps": len(gaps),
        },
    )


def baseline(fed: Federation, store: str) -> Baseline:
    with fed.load("a") as load:
        time.sleep(BASELINE)
    samples = list(load.samples)
    b = Baseline(
        store=store,
        requests=len(samples),
        lost=sum(s.served_by is None for s in samples),
        p50_ms=round(1000 * latency_p(samples, 0.5), 1),
        p99_ms=round(1000 * latency_p(samples, 0.99), 1),
        served_by=counts(samples),
    )
    log(f"baseline ({store}): lost {b.lost}/{b.requests}, p50 {b.p50_ms} ms, p99 {b.p99_ms} ms,"
        f" served by {b.served_by}")  # fmt: skip
    return b


def progress(run: RunFigures, runs: int) -> None:
    drill = DRILLS[run.drill]
    text = f"{drill.first_label} {_fmt(run.first_s)} s"
    if drill.all_label:
        text += f", {drill.all_label} {_fmt(run.all_s)} s"
    extra = "".join(f", {k} {v}" for k, v in run.extra.items())
    log(f"drill {run.drill} run {run.run}/{runs}: {text}, lost {run.lost}/{run.requests}"
        f" (in flight at the fault {run.lost_in_flight}), slowest {run.slowest_s:.2f} s"
        f"{extra}, served by {run.served_by}")  # fmt: skip


def _fmt(value: float | None) -> str:
    return "never" if value is None else f"{value:.2f}"


@contextlib.contextmanager
def federation(net: Net, store_url: str | None, keep: list[Path]) -> Iterator[Federation]:
    workdir = Path(tempfile.mkdtemp(prefix="meshfed-drills-"))
    fed = Federation(net, workdir, store_url)
    ok = False
    try:
        started = time.monotonic()
        fed.start()
        log(f"federation up in {time.monotonic() - started:.1f} s (logs: {workdir / 'logs'})")
        yield fed
        ok = True
    finally:
        fed.close()
        if ok:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            keep.append(workdir / "logs")


@contextlib.contextmanager
def namespaces() -> Iterator[Net]:
    net = Net()
    try:
        net.up()
        yield net
    finally:
        net.down()


def measure(
    args: argparse.Namespace,
) -> tuple[list[RunFigures], list[Baseline], list[Path], list[str]]:
    """Every run's figures, the baselines, log dirs kept, and the failed steps."""
    runs: list[RunFigures] = []
    baselines: list[Baseline] = []
    keep: list[Path] = []
    failed: list[str] = []
    wanted = args.drills
    try:
        if wanted & {"3", "4"}:
            log("building the federation (registry on SQLite)")
            with namespaces() as net, federation(net, None, keep) as fed:
                baselines.append(baseline(fed, "SQLite"))
                for n in range(1, args.runs + 1):
                    for key in ("3", "4"):
                        if key in wanted:
                            run = drill3(fed, n) if key == "3" else drill4(fed, net, n)
                            runs.append(run)
                            progress(run, args.runs)
        if "7" in wanted:
            log("building the federation (registry on a 3-member etcd)")
            with namespaces() as net:
                reg = net.thread("reg")
                etcd = EtcdCluster(3, ["--heartbeat-interval", "100", "--election-timeout", "1000"])
                reg.call(etcd.start)
                try:
                    with federation(net, etcd.url, keep) as fed:
                        baselines.append(baseline(fed, "etcd"))
                        for n in range(1, args.runs + 1):
                            run = drill7(fed, net, etcd, n)
                            runs.append(run)
                            progress(run, args.runs)
                finally:
                    reg.call(etcd.close)
    except KeyboardInterrupt:
        log("interrupted: reporting the runs so far")
    except (E2EError, EtcdStartError, RuntimeError) as exc:
        log(f"stopped by a failed step: {exc}")
        failed.append(str(exc))
    return runs, baselines, keep, failed


def section(runs: list[RunFigures], baselines: list[Baseline], n_runs: int) -> str:
    today = datetime.date.today().isoformat()
    intro = (
        f"`python -m benchmarks.drills --runs {n_runs}` (as root; figures of {today},"
        f" {os.cpu_count()} cores, every component a real process in network namespaces;"
        " about 5 minutes). Each run: `a` sends 20 requests/s (one per new connection,"
        " client timeout 10 s) through its gateway; 2 s in, the fault; held (drill 3: 6 s,"
        " drill 4: 10 s, drill 7: 20 s), repaired, and the run ends once `b` serves again."
        " `first`: from the fault to the first reply from `c` (drill 7: the first"
        " successful registry write, through the new etcd leader); `all`: from the fault to"
        " the send time after which every request is answered by `c` within 1 s. p50 / p99"
        " over the runs are nearest-rank (rank ceil(q x n) of the n sorted runs: with 5"
        " runs p99 is the worst run). Lost: requests not answered in 10 s, with those"
        " already in flight when the fault struck in brackets. The reference in the same"
        " run is the target and the same load with no fault (baseline)."
    )
    return (
        textwrap.fill(intro, 88)
        + "\n\n"
        + table(runs, baselines)
        + "\nBy run:\n\n"
        + per_run_lines(runs)
    )


def load_json(path: Path) -> tuple[list[RunFigures], list[Baseline]]:
    data = json.loads(path.read_text())
    return [RunFigures(**r) for r in data["runs"]], [Baseline(**b) for b in data["baselines"]]


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.drills", description=__doc__)
    p.add_argument("--runs", type=int, default=5, help="repetitions per drill (default 5)")
    p.add_argument("--drills", default="3,4,7", help="which drills (default 3,4,7)")
    p.add_argument("--write-docs", action="store_true",
                   help="replace the drills section of docs/performance.md")  # fmt: skip
    p.add_argument("--json", type=Path, help="also write every run's figures here")
    p.add_argument("--from-json", type=Path,
                   help="no drills: report the figures a previous --json wrote")  # fmt: skip
    args = p.parse_args(argv)
    args.drills = {d.strip() for d in args.drills.split(",") if d.strip()}
    if not args.drills or args.drills - set(DRILLS):
        p.error(f"--drills: choose from {','.join(DRILLS)}")
    if args.runs < 1:
        p.error("--runs: at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.from_json is not None:
        runs, baselines = load_json(args.from_json)
        return report(runs, baselines, max((r.run for r in runs), default=0), args)
    reason = can_run()
    if reason:
        print(f"benchmarks.drills: {reason}; e.g. sudo .venv/bin/python -m benchmarks.drills",
              file=sys.stderr)  # fmt: skip
        return EXIT_USAGE
    started = time.monotonic()
    runs, baselines, keep, failed = measure(args)
    log(f"done in {(time.monotonic() - started) / 60:.1f} min")
    for path in keep:
        log(f"logs of a federation that failed kept in {path}")
    if not runs:
        log("no run finished")
        return 1
    if args.json is not None:
        data = {"runs": [asdict(r) for r in runs], "baselines": [asdict(b) for b in baselines]}
        args.json.write_text(json.dumps(data, indent=2) + "\n")
    code = report(runs, baselines, args.runs, args)
    return code if not (keep or failed) else 1


def report(
    runs: list[RunFigures], baselines: list[Baseline], n_runs: int, args: argparse.Namespace
) -> int:
    text = section(runs, baselines, n_runs)
    print(text)
    if args.write_docs:
        DOC.write_text(replace_section(DOC.read_text(), text))
        log(f"wrote the drills section of {DOC.relative_to(ROOT)}")
    return 0
