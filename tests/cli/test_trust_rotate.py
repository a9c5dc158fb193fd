"""`meshfed trust rotate` and `meshfed trust rotation` through the real entry point,
against a real `meshfed serve` (wall clock). The served bundles' refresh hint is
lowered to 1 s in the store first, so propagation (3 x hint) takes 3 s and
`rotate --wait` can be watched waiting for it.
"""

from __future__ import annotations

import json
from typing import Any

import yaml

from federation.model import TrustDomain
from federation.store import Store
from tests.cli.conftest import Registry

PASS, FAIL = "\u221a", "\u00d7"


def rotation(registry: Registry) -> dict[str, Any]:
    status: dict[str, Any] = json.loads(registry.ok("trust", "rotation", "-o", "json"))
    return status


def test_rotate_drives_every_stage_with_progress(registry: Registry) -> None:
    for name in ("east", "west"):
        registry.ok(
            "cluster", "add", name, "--region", "r1", "--zone", "z1",
            "--trust-domain", f"{name}.example",
        )  # fmt: skip

    async def short_hints(store: Store) -> None:
        for held in await store.trust_domains.list():
            td = held.record
            quick = TrustDomain(td.name, td.roots_pem, td.sequence, 1)
            await store.trust_domains.update(quick, held.revision)

    registry.store(short_hints)
    status = rotation(registry)
    assert (status["stage"], status["next_action"]) == ("stable", "prepare")
    old_fp = status["current_root"]["fingerprint_sha256"]
    table = registry.ok("trust", "rotation")
    assert "root rotation: stable" in table
    assert f"{PASS} every served bundle holds the current root (3 of 3 bundles)" in table
    assert f"{PASS} next: meshfed trust rotate --stage prepare" in table

    # no --stage: the next step, prepare
    out = registry.ok("trust", "rotate")
    assert f"{PASS} prepare: next root" in out
    assert f"{FAIL} propagation complete" in out
    status = rotation(registry)
    assert status["stage"] == "propagating" and status["propagation"]["required_seconds"] == 3
    assert all(b["has_current"] and b["has_next"] for b in status["bundles"])

    # too early: refused with the state machine's reason, exit 1, one line on stderr
    early = registry.run("trust", "rotate", "--stage", "activate")
    assert early.returncode == 1
    assert early.stderr.startswith("error: activate refused: propagation incomplete")
    assert "3 x the refresh hint" in early.stderr

    # --wait: waits (with progress lines) until 3 x hint has passed, then activates
    out = registry.ok("trust", "rotate", "--wait")
    assert "\u203c waiting: propagation complete" in out
    assert f"{PASS} propagation complete" in out
    assert f"{PASS} activate: signing with the next root; 3 intermediate(s) re-issued" in out
    status = rotation(registry)
    assert (status["stage"], status["signing_root"]) == ("active", "next")
    assert {i["root"] for i in status["intermediates"]} == {"next"}
    table = registry.ok("trust", "rotation")
    assert f"{PASS} every intermediate chains to the next root (3 of 3 re-issued)" in table
    assert f"{FAIL} renewal window since activate elapsed" in table

    # retire: waits one SVID lifetime unless forced; --wait cannot help within a test
    early = registry.run("trust", "rotate")
    assert early.returncode == 1 and "error: retire refused: SVIDs issued under" in early.stderr
    timed_out = registry.run("trust", "rotate", "--wait", "--timeout", "1s")
    assert timed_out.returncode == 1 and "gave up waiting to retire" in timed_out.stderr
    out = json.loads(registry.ok("trust", "rotate", "--stage", "retire", "--force", "-o", "json"))
    assert out["action"] == "retire"
    assert out["rotation"]["stage"] == "stable"
    new_fp = out["rotation"]["current_root"]["fingerprint_sha256"]
    assert new_fp != old_fp
    shown = yaml.safe_load(registry.ok("trust", "rotation", "-o", "yaml"))
    assert [b["roots"] for b in shown["bundles"]] == [[new_fp]] * 3
    assert shown["next_root"] is None

    # abort needs a rotation in progress; prepare + abort leaves the bundles as they were
    refused = registry.run("trust", "rotate", "--stage", "abort")
    assert refused.returncode == 1 and "abort is only possible while propagating" in refused.stderr
    registry.ok("trust", "rotate", "--stage", "prepare")
    out = registry.ok("trust", "rotate", "--stage", "abort")
    assert f"{PASS} abort:" in out
    assert [b["roots"] for b in rotation(registry)["bundles"]] == [[new_fp]] * 3


def test_rotate_bad_usage_exits_2_naming_the_value(registry: Registry) -> None:
    bad = registry.run("trust", "rotate", "--stage", "explode")
    assert bad.returncode == 2 and "explode" in bad.stderr
    bad = registry.run("trust", "rotate", "--wait", "--timeout", "soon")
    assert bad.returncode == 2 and "'soon' is not a duration" in bad.stderr
    bad = registry.run("trust", "rotation", "-o", "xml")
    assert bad.returncode == 2 and "xml" in bad.stderr
