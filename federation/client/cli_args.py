"""Command-line pieces `meshfed agent` and `meshfed gateway` share: the registry
address and the join token.

Why it exists: the agent and the gateway must not import each other
(tests/test_import_contract.py) but both reach the registry through this package,
so the flags that say how -- `--registry` and the join token's three sources --
are parsed once here and read the same in both commands.

The join token comes from, first to last: `--join-token-file FILE`, `--join-token
T`, `$MESHFED_JOIN_TOKEN`. Only the flag shows in the process list, so the
manifests use the environment variable (a Secret reference) and operators the
file. Messages name the source, never the secret.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

from federation.errors import FederationError, ValidationError
from federation.model import validation

JOIN_TOKEN_ENV: Final = "MESHFED_JOIN_TOKEN"
JOIN_TOKEN_HELP: Final = (
    "join token from `meshfed cluster join-token NAME` (single-use, or reusable with "
    f"--reusable); it shows in `ps`: prefer --join-token-file or ${JOIN_TOKEN_ENV}"
)
JOIN_TOKEN_FILE_HELP: Final = (
    f"read the join token from FILE (before --join-token, ${JOIN_TOKEN_ENV})"
)
REGISTRY_HELP: Final = "the registry's gRPC control plane, HOST:PORT or grpc://HOST:PORT"
_EXAMPLE_PORT: Final = 9471  # `meshfed serve --grpc`'s default, only for the hint
# `<id>.<secret>`: the model's join token id (federation.model.access) and the
# secret's URL-safe base64 (secrets.token_urlsafe).
_TOKEN: Final = re.compile(r"[a-z0-9]{6,32}\.[A-Za-z0-9_-]+")


def registry_address(text: str) -> str:
    """`--registry`: HOST:PORT or grpc://HOST:PORT -> canonical HOST:PORT ([v6]:port).

    An http(s) URL (the dashboard API's form) is refused naming the value, with the
    HOST:PORT to give instead."""
    if "://" in text:
        scheme = text.partition("://")[0].lower()
        try:
            parts = urlsplit(text)
            host, port = parts.hostname, parts.port
        except ValueError:
            host, port = None, None
        if scheme != "grpc":
            shown = f"[{host}]" if host and ":" in host else host or "HOST"
            example = f"{shown}:{port or _EXAMPLE_PORT}"
            raise argparse.ArgumentTypeError(
                f"{text!r} is a URL; give the control plane as HOST:PORT (e.g. {example})"
            )
        if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
            raise argparse.ArgumentTypeError(f"{text!r} is not grpc://HOST:PORT")
        text = parts.netloc
    try:
        canonical = validation.host_port("address", text)
    except ValidationError as err:
        raise argparse.ArgumentTypeError(f"{text!r}: {err.message}") from None
    host_part, _, port_part = canonical.rpartition(":")
    host_part = host_part.strip("[]")
    return f"[{host_part}]:{port_part}" if ":" in host_part else f"{host_part}:{port_part}"


class JoinTokenError(ValueError):
    """A join token flag is missing, unreadable or malformed: bad usage (exit 2)."""


@dataclass(frozen=True, slots=True)
class JoinToken:
    value: str
    source: str  # `--join-token-file`, `--join-token` or `$MESHFED_JOIN_TOKEN`

    def __repr__(self) -> str:  # never the secret
        return f"JoinToken(source={self.source!r})"


def join_token(flag: str | None, file: str | None, environ: Mapping[str, str]) -> JoinToken:
    """The join token from its first source given (JoinTokenError naming the source,
    never echoing the secret)."""
    if file is not None:
        try:
            with open(file, encoding="utf-8") as fh:
                text = fh.read().strip()
        except OSError as err:
            raise JoinTokenError(
                f"--join-token-file: cannot read {file}: {err.strerror or err}"
            ) from None
        except UnicodeDecodeError:
            raise JoinTokenError(f"--join-token-file: {file} is not text") from None
        if not text:
            raise JoinTokenError(f"--join-token-file: {file} is empty")
        token = JoinToken(text, "--join-token-file")
    elif flag:
        token = JoinToken(flag.strip(), "--join-token")
    elif environ.get(JOIN_TOKEN_ENV, "").strip():
        token = JoinToken(environ[JOIN_TOKEN_ENV].strip(), f"${JOIN_TOKEN_ENV}")
    else:
        raise JoinTokenError(f"--join-token: required (or --join-token-file, or ${JOIN_TOKEN_ENV})")
    if not _TOKEN.fullmatch(token.value):
        raise JoinTokenError(
            f"{token.source}: not a join token (expected <id>.<secret> as "
            "`meshfed cluster join-token NAME` prints it)"
        )
    return token


def join_refused(source: str, err: FederationError) -> str:
    """The message when the registry refuses the token at join time (exit 1)."""
    return (
        f"{source}: the registry refused the join token ({err}); "
        "get a new one with `meshfed cluster join-token NAME`"
    )
