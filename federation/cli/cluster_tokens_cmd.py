"""`meshfed cluster join-token|join-tokens|revoke-token`: a cluster's join tokens.

Why this module exists: minting, listing and revoking join tokens is its own small
set of commands with its own argument types (token lifetimes, token ids) and
rules (a single-use token lives at most a day, a reusable one a year); it sits
apart so cluster_cmd.py stays about the clusters themselves. `cluster add` mints
a token too and uses the lifetime types and the secret-file writer from here;
cluster_cmd.register registers these subcommands with `register_tokens`.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from federation.cli import args as types
from federation.cli.apiclient import Client, CliError, command, connect
from federation.cli.output import FORMATS, render
from federation.registry.service_tokens import MAX_JOIN_TTL, MAX_REUSABLE_JOIN_TTL

TOKEN_COLUMNS = ("id", "reusable", "uses", "state", "expires")
# The registry's limits (federation/registry/service_tokens.py): a single-use token
# lives at most a day, a reusable one at most a year.
MAX_SINGLE_USE_TTL = int(MAX_JOIN_TTL.total_seconds())
MAX_REUSABLE_TTL = int(MAX_REUSABLE_JOIN_TTL.total_seconds())
DEFAULT_TOKEN_TTL = 3600
# The model's token id pattern (federation.model.access `_TOKEN_ID`, private there).
_TOKEN_ID = re.compile(r"[a-z0-9]{6,32}")


def token_ttl(text: str) -> int:
    """A join token lifetime: `30s`, `15m`, `2h` or `30d`, from 1s to 365d (whether
    it may exceed 24h depends on --reusable: see `ttl_problem`). The unit is required:
    a bare `5` is refused rather than read as 5 seconds."""
    return duration_seconds(text, MAX_REUSABLE_TTL, "365d")


DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def duration_seconds(text: str, most: int, most_text: str) -> int:
    """`<digits><unit>` (s, m, h or d), from 1s to `most` seconds."""
    number, unit = text[:-1], text[-1:]
    if text.isascii() and text.isdigit():
        raise argparse.ArgumentTypeError(
            f"{text!r} has no unit: say {text}s, {text}m, {text}h or {text}d"
        )
    if unit not in DURATION_UNITS or not number.isascii() or not number.isdigit():
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a duration like 90s, 30m, 2h or 30d (from 1s to {most_text})"
        )
    seconds = int(number) * DURATION_UNITS[unit]
    if not 1 <= seconds <= most:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration from 1s to {most_text}")
    return seconds


def token_id(text: str) -> str:
    """A join token id, or a whole token `ID.SECRET` pasted in (its id is used). Error
    messages quote the id part only, never what follows the dot."""
    head, dot, _secret = text.partition(".")
    if not _TOKEN_ID.fullmatch(head):
        shown = f"{head!r} (before the dot)" if dot else repr(text)
        raise argparse.ArgumentTypeError(
            f"{shown} is not a join token id (6-32 lowercase letters and digits: the part "
            "of the token before the dot)"
        )
    return head


def ttl_problem(flag: str, seconds: int, reusable: bool) -> str | None:
    """The usage error for a single-use token asked to live longer than a day, or None."""
    if reusable or seconds <= MAX_SINGLE_USE_TTL:
        return None
    return (
        f"argument {flag}: {_duration(seconds)!r} is longer than 24h, the most a single-use "
        "token lives (add --reusable for up to 365d)"
    )


def _duration(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def usage_error(ns: argparse.Namespace, message: str) -> int:
    print(f"meshfed cluster {ns.action}: error: {message}", file=sys.stderr)
    return 2


def write_secret(path: Path, text: str) -> str | None:
    """Write `text` to `path` (0600); the reason it could not be written, or None.
    The directory must exist (`types.new_file` checked it at parse time)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            os.fchmod(fd, 0o600)
            f.write(text)
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


def discard_token(api: Client, cluster: str, token_id: str) -> str:
    """Revoke a token nobody will see (its file could not be written), best effort;
    what became of it, for the error message."""
    try:
        api.delete(f"/api/v1/clusters/{cluster}/join-tokens/{token_id}")
    except CliError:
        return f"join token {token_id} was minted and could not be revoked: revoke it"
    return f"join token {token_id} was minted and revoked"


def register_tokens(actions: Any) -> list[argparse.ArgumentParser]:
    """Add the join-token subcommands to `meshfed cluster`; the parsers, for the
    caller to add the global flags to."""
    jt = actions.add_parser(
        "join-token", help="mint a join token for a cluster's agent and gateways"
    )
    jt.add_argument("name", type=types.cluster_name, metavar="NAME")
    jt.add_argument(
        "--reusable",
        action="store_true",
        help="redeemable until it expires (gateway replicas, agent restarts), not just once",
    )
    jt.add_argument(
        "--ttl",
        type=token_ttl,
        default=DEFAULT_TOKEN_TTL,
        metavar="DURATION",
        help="lifetime: 30m, 2h, 30d, ... (default 1h; at most 24h, or 365d with --reusable)",
    )
    jt.add_argument(
        "--file",
        type=types.new_file,
        metavar="FILE",
        help="write the token to FILE (0600; its directory must exist) instead of printing it",
    )
    jt.add_argument("-o", "--output", choices=FORMATS, default="table")
    jt.set_defaults(handler=_join_token)

    jts = actions.add_parser(
        "join-tokens", help="list a cluster's join tokens (ids and use counts, never secrets)"
    )
    jts.add_argument("name", type=types.cluster_name, metavar="NAME")
    jts.add_argument("-o", "--output", choices=FORMATS, default="table")
    jts.set_defaults(handler=_join_tokens)

    rv = actions.add_parser("revoke-token", help="revoke one of a cluster's join tokens")
    rv.add_argument("name", type=types.cluster_name, metavar="NAME")
    rv.add_argument(
        "id",
        type=token_id,
        metavar="ID",
        help="the token id (before the dot; a whole token is accepted, its id is used)",
    )
    rv.set_defaults(handler=_revoke_token)
    return [jt, jts, rv]


@command
def _join_token(ns: argparse.Namespace) -> int:
    if problem := ttl_problem("--ttl", ns.ttl, ns.reusable):
        return usage_error(ns, problem)
    with connect(ns) as api:
        token = api.post(
            f"/api/v1/clusters/{ns.name}/join-tokens",
            {"ttl_seconds": ns.ttl, "reusable": ns.reusable},
        )
        if ns.file and (problem := write_secret(ns.file, token["token"] + "\n")):
            fate = discard_token(api, ns.name, token["id"])
            raise CliError(f"cannot write {ns.file}: {problem} ({fate})")
    if ns.output != "table":
        shown = dict(token)
        if ns.file:
            shown["token"] = None
            shown["token_file"] = str(ns.file)
        print(render(shown, ns.output))
        return 0
    use = "reusable" if token["reusable"] else "single use"
    about = f'join token {token["id"]} of cluster "{ns.name}" ({use}, expires {token["expires"]})'
    if ns.file:
        print(f"{about} written to {ns.file}")
    else:
        print(token["token"])  # alone on stdout, for `$(meshfed cluster join-token ...)`
        print(about, file=sys.stderr)
    return 0


def token_state(token: dict[str, Any], now: datetime) -> str:
    """valid, used (a spent single-use token) or expired."""
    if token["used"]:
        return "used"
    expires = datetime.fromisoformat(str(token["expires"]).replace("Z", "+00:00"))
    return "expired" if expires <= now else "valid"


@command
def _join_tokens(ns: argparse.Namespace) -> int:
    with connect(ns) as api:
        tokens = api.list(f"/api/v1/clusters/{ns.name}/join-tokens")
    now = datetime.now(UTC)
    rows = [{**t, "state": token_state(t, now)} for t in tokens]
    rows.sort(key=lambda t: (str(t["expires"]), str(t["id"])))
    if ns.output == "table":
        print(render(rows, "table", TOKEN_COLUMNS))
    else:
        print(render({"cluster": ns.name, "items": rows}, ns.output))
    return 0


@command
def _revoke_token(ns: argparse.Namespace) -> int:
    with connect(ns) as api:
        api.get(f"/api/v1/clusters/{ns.name}")  # an unknown cluster is named as such
        api.delete(f"/api/v1/clusters/{ns.name}/join-tokens/{ns.id}")
    print(f'join token {ns.id} of cluster "{ns.name}" revoked')
    return 0
