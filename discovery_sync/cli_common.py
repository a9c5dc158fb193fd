"""Argument checks shared by `meshfed agent` and `meshfed dns`.

Each check raises `argparse.ArgumentTypeError` with a message naming the bad
value, which argparse prints as `--flag: message` before exiting with status 2
(the CLI's "bad usage" code, README "Exit codes").
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import signal
from collections.abc import Coroutine
from typing import Any

from federation.errors import ValidationError
from federation.model import validation


def host_port(text: str) -> tuple[str, int]:
    try:
        canonical = validation.host_port("address", text)
    except ValidationError as err:
        raise argparse.ArgumentTypeError(err.message) from None
    host, _, port = canonical.rpartition(":")
    return host.strip("[]"), int(port)


def host_port_text(text: str) -> str:
    host, port = host_port(text)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def label(text: str) -> str:
    try:
        return validation.dns1123_label("name", text)
    except ValidationError as err:
        raise argparse.ArgumentTypeError(err.message) from None


def label_value(text: str) -> str:
    try:
        return validation.label_value("value", text)
    except ValidationError as err:
        raise argparse.ArgumentTypeError(err.message) from None


def ip_address(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an IPv4 or IPv6 address") from None


def run_until_signal(main: Coroutine[Any, Any, int]) -> int:
    """Run `main`; SIGTERM or SIGINT cancels it and the process exits 0."""

    async def runner() -> int:
        task = asyncio.ensure_future(main)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, task.cancel)
        try:
            return await task
        except asyncio.CancelledError:
            return 0

    return asyncio.run(runner())
