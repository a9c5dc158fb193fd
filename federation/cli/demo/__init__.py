"""`meshfed demo`: run the whole federation on loopback and show failover (see run.py)."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

from federation.cli.demo.run import DemoOptions, demo


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be positive")
    return value


def register(sub: Any) -> None:
    p = sub.add_parser("demo", help="run a 3-cluster federation on loopback and show failover")
    p.add_argument("--keep-running", action="store_true", help="leave everything up after")
    p.add_argument("--summary-json", type=Path, default=None, help="write the summary here")
    p.add_argument("--rate", type=_positive, default=20.0, help="requests/s from east")
    p.add_argument("--phase-seconds", type=_positive, default=5.0, help="length of each phase")
    p.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    options = DemoOptions(args.keep_running, args.summary_json, args.rate, args.phase_seconds)
    return asyncio.run(demo(options))
