"""argparse types: a bad value is bad usage (exit 2) and the message names it.

Each type reuses the domain model's own validation, so the CLI refuses exactly
what the registry would refuse, before any request is sent.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from federation.errors import ValidationError
from federation.model import validation as v


def _wrap(check: Callable[[str, object], str], what: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        try:
            return check(what, text)
        except ValidationError as exc:
            # The model's message already quotes the value: "'East' is not an RFC 1123 label..."
            message = str(exc)
            prefix = f"{what}: "
            raise argparse.ArgumentTypeError(
                message[len(prefix) :] if message.startswith(prefix) else message
            ) from None

    parse.__name__ = what.replace(" ", "_")
    return parse


cluster_name = _wrap(v.dns1123_label, "cluster name")
namespace_name = _wrap(v.dns1123_label, "namespace")
label_value = _wrap(v.label_value, "label value")
trust_domain = _wrap(v.trust_domain, "trust domain")
gateway_address = _wrap(v.host_port, "gateway address")


def namespaces(text: str) -> list[str]:
    """`ns1,ns2`: RFC 1123 labels, comma separated."""
    out = []
    for part in text.split(","):
        out.append(namespace_name(part.strip()))
    return out


_CONTEXT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@:-]{0,252}$")


def context_name(text: str) -> str:
    if not _CONTEXT.fullmatch(text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a context name (letters, digits, '.', '_', '-', '@', ':')"
        )
    return text


def registry_url(text: str) -> str:
    """An http(s) URL with a host: where the registry's REST API listens."""
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an http:// or https:// URL of the registry API"
        )
    del port
    return normalize_registry(text)


def normalize_registry(url: str) -> str:
    """The registry's base URL: `meshfed serve` prints `http://HOST:PORT/api/v1`, the
    API's root, and paths are appended to the base, so a trailing `/api/v1` and `/`
    are dropped."""
    url = url.rstrip("/")
    return url.removesuffix("/api/v1").rstrip("/")


def positive_days(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of days")
    return int(text)


def _nearest_existing(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path(".")


def new_file(text: str) -> Path:
    return _checked_path(_new_file, text)


def directory(text: str) -> Path:
    """A directory the CLI writes into or creates: an existing directory, or a path
    whose nearest existing ancestor is a directory (so creating it can work)."""
    return _checked_path(_directory, text)


def _checked_path(check: Callable[[str], Path], text: str) -> Path:
    """`check(text)`, with what stat(2) itself refuses (a name too long, a loop of
    links, no permission to look) as a usage error naming the path, not a traceback:
    argparse turns only ArgumentTypeError, TypeError and ValueError into exit 2."""
    try:
        return check(text)
    except OSError as exc:
        raise argparse.ArgumentTypeError(f"{text[:80]}: {exc.strerror or exc}") from None


def _new_file(text: str) -> Path:
    """A file the CLI is about to write (a secret): an existing regular file, or a new
    one in an existing, writable directory. Checked before any request is sent, so a
    bad path never leaves a token minted and unwritten; missing directories are
    refused, not created."""
    path = Path(text).expanduser()
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a directory, not a file")
    if path.exists():
        if not path.is_file():
            raise argparse.ArgumentTypeError(f"{text} is not a regular file")
        if not os.access(path, os.W_OK):
            raise argparse.ArgumentTypeError(f"{text} is not writable")
        return path
    if path.is_symlink():
        raise argparse.ArgumentTypeError(f"{text} is a dangling symbolic link")
    parent = path.parent
    if not parent.exists():
        raise argparse.ArgumentTypeError(
            f"{text}: directory {parent} does not exist (create it first)"
        )
    if not parent.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"{text}: directory {parent} is not writable")
    return path


def _directory(text: str) -> Path:
    path = Path(text).expanduser()
    if path.exists():
        if not path.is_dir():
            raise argparse.ArgumentTypeError(f"{text} is not a directory")
        return path
    ancestor = _nearest_existing(path)
    if not ancestor.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: {ancestor} is not a directory")
    return path
