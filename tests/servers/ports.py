"""Free loopback ports for test servers, including `meshfed serve`'s port pair.

`meshfed serve --grpc 127.0.0.1:P` also binds P+1 (the Join service), so a test
that starts it must reserve both, and keep its API port off P+1.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def grpc_port_pair() -> int:
    """A free port whose successor (the registry's Join port, gRPC + 1) is free too."""
    for _ in range(50):
        port = free_port()
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise AssertionError("no free port pair on 127.0.0.1")


def serve_ports() -> tuple[int, int]:
    """(API port, gRPC port) for `meshfed serve`, with the Join port free as well."""
    grpc = grpc_port_pair()
    api = free_port()
    while api in (grpc, grpc + 1):
        api = free_port()
    return api, grpc


def serve_argv(data_dir: Path, api: int, grpc: int, *extra: str) -> list[str]:
    """`meshfed serve` on loopback as a child process's argv (run it with cwd = the repo
    and `clean_env()`), the data dir and ports given, plus `extra` flags."""
    return [sys.executable, "-m", "federation.cli", "serve", "--data-dir", str(data_dir),
            "--api", f"127.0.0.1:{api}", "--grpc", f"127.0.0.1:{grpc}", *extra]  # fmt: skip


def clean_env() -> dict[str, str]:
    """This process's environment without MESHFED_* (a developer's own settings)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("MESHFED_")}
