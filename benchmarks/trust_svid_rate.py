"""SVIDs issued per second (CSR verify + sign + re-validate) against OpenSSL's ECDSA limit.

Run: ``python -m benchmarks.trust_svid_rate`` or ``python benchmarks/trust_svid_rate.py``
(``--seconds N`` per measurement, default 2; ``--no-openssl`` to skip the reference).

Both sides run pinned to the same single CPU, one after the other in one run,
because these machines are noisy: the ratio is the figure to read. The issue's
target is at least 2,000 SVIDs/s on one core. An SVID costs one ECDSA P-256
signature and two verifications (the CSR's proof of possession and the new
leaf during re-validation; the intermediate -> root link is verified once and
memoised, see trust_bundle.validate), so the crypto-only ceiling is
1 / (1/sign_rate + 2/verify_rate), printed alongside.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime

from trust_bundle.ca import create_intermediate_ca, create_root_ca, sign_certificate
from trust_bundle.ids import cluster_entitlement, workload_id
from trust_bundle.keys import generate_key
from trust_bundle.svid import (
    build_svid_certificate,
    check_entitlement,
    issue_svid,
    make_csr,
    parse_csr,
    validate_issued,
    verify_csr,
)

# Distinct CSRs cycled through during the run (client-side work, not timed).
CSR_POOL = 200
# ECDSA verifications per issued SVID: CSR and leaf (see module docstring).
VERIFIES_PER_SVID = 2
TARGET_PER_SECOND = 2000  # issue 3


def pin_to_one_cpu() -> str:
    """Pin this process (and children, e.g. openssl) to one CPU; return a description."""
    if not hasattr(os, "sched_setaffinity"):
        return "not pinned (no sched_setaffinity)"
    cpu = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    return f"pinned to CPU {cpu}"


def rate(work: Callable[[int], object], seconds: float) -> float:
    """Calls of ``work(i)`` per second over about ``seconds``."""
    count, start = 0, time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(50):
            work(count)
            count += 1
        now = time.perf_counter()
        if now >= deadline:
            return count / (now - start)


def openssl_speed(seconds: int) -> tuple[float, float] | None:
    """(sign/s, verify/s) from ``openssl speed -seconds N ecdsap256``."""
    binary = shutil.which("openssl")
    if binary is None:
        return None
    out = subprocess.run(
        [binary, "speed", "-seconds", str(seconds), "ecdsap256"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    match = re.search(r"256 bits ecdsa \(nistp256\)\s+\S+s\s+\S+s\s+([\d.]+)\s+([\d.]+)", out)
    return (float(match.group(1)), float(match.group(2))) if match else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--no-openssl", action="store_true")
    args = parser.parse_args()
    pinning = pin_to_one_cpu()

    now = datetime.now(UTC)
    root = create_root_ca(now)
    issuer = create_intermediate_ca(root, "bench", "bench.meshfed", now)
    entitlement = cluster_entitlement("bench.meshfed", "bench", namespaces=["bench"])
    csrs = [
        make_csr(generate_key(), workload_id("bench.meshfed", "bench", f"sa{i}"))
        for i in range(CSR_POOL)
    ]
    claims = [verify_csr(parse_csr(c)) for c in csrs]
    builders = [build_svid_certificate(c, issuer, now) for c in claims]
    certs = [sign_certificate(b, issuer.key) for b in builders]

    def pick(i: int) -> int:
        return i % CSR_POOL

    total = rate(lambda i: issue_svid(csrs[pick(i)], issuer, entitlement, now), args.seconds)
    stages = [
        ("parse + verify CSR", lambda i: verify_csr(parse_csr(csrs[pick(i)]))),
        ("check entitlement", lambda i: check_entitlement(claims[pick(i)], entitlement, issuer)),
        ("build certificate", lambda i: build_svid_certificate(claims[pick(i)], issuer, now)),
        ("sign (ECDSA P-256)", lambda i: sign_certificate(builders[pick(i)], issuer.key)),
        (
            "re-validate chain",
            lambda i: validate_issued(certs[pick(i)], claims[pick(i)], issuer, now),
        ),
    ]
    stage_rates = [(name, rate(fn, args.seconds / 2)) for name, fn in stages]
    reference = None if args.no_openssl else openssl_speed(max(1, round(args.seconds)))

    print(f"SVID issuance benchmark ({pinning}, {args.seconds:g} s per measurement)\n")
    print(f"{'measurement':<44} {'per second':>12} {'ratio':>8}")
    print("-" * 66)
    print(f"{'meshfed issue_svid (verify+sign+validate)':<44} {total:>12,.0f} {'':>8}")
    if reference is not None:
        sign, verify = reference
        ceiling = 1 / (1 / sign + VERIFIES_PER_SVID / verify)
        print(f"{'openssl speed ecdsap256: sign':<44} {sign:>12,.0f} {total / sign:>8.3f}")
        print(f"{'openssl speed ecdsap256: verify':<44} {verify:>12,.0f} {total / verify:>8.3f}")
        label = f"crypto ceiling: 1 sign + {VERIFIES_PER_SVID} verify / SVID"
        print(f"{label:<44} {ceiling:>12,.0f} {total / ceiling:>8.3f}")
    print(f"{'target (issue 3)':<44} {TARGET_PER_SECOND:>12,.0f} {total / TARGET_PER_SECOND:>8.2f}")
    print("\nwhere the time goes (each stage alone):")
    print(f"{'stage':<44} {'per second':>12} {'us each':>8}")
    print("-" * 66)
    for name, per_second in stage_rates:
        print(f"{name:<44} {per_second:>12,.0f} {1e6 / per_second:>8.1f}")
    verdict = "met" if total >= TARGET_PER_SECOND else "MISSED"
    print(f"\ntarget of {TARGET_PER_SECOND:,} SVIDs/s on one core: {verdict}")


if __name__ == "__main__":
    main()
