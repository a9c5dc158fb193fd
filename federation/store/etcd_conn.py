"""The etcd backend's connection layer: gRPC channel, TLS files, error translation.

Split from `federation.store.etcd` to keep that module about the `Backend` contract.
`open_channel` builds one gRPC channel over every member (round-robin, so a dead
member is skipped and a restarted one is used again soon); `translate` is the one
place where gRPC / etcd3aio exceptions become `federation.errors` exceptions.
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import grpc  # type: ignore[import-untyped]
import grpc.aio  # type: ignore[import-untyped]
from etcd3aio import EtcdConnectionError, EtcdError, EtcdTransientError

from federation.errors import BadStoreURL, StoreError, StoreUnavailable
from federation.store import etcd_url

# gRPC channel options. gRPC's own reconnect backoff defaults to 1 s growing to 120 s,
# which would keep a restarted member unused for minutes; cap it like the watch.
# Messages may be large (a 1.5 MiB value, etcd's --max-request-bytes default, and
# pages of a big list), so lift gRPC's 4 MiB receive default.
CHANNEL_OPTIONS: list[tuple[str, int | str | bool]] = [
    ("grpc.lb_policy_name", "round_robin"),
    ("grpc.keepalive_time_ms", 10_000),  # keepalives as etcd3aio's own defaults
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2_000),
    ("grpc.max_receive_message_length", 256 * 1024 * 1024),
]

# gRPC codes that mean "no member answered" rather than "the request is wrong".
TRANSIENT = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


def translate(exc: BaseException, what: str) -> StoreError:
    """One foreign exception as the `federation.errors` exception it means."""
    if isinstance(exc, StoreError):
        return exc
    if isinstance(exc, TimeoutError):
        return StoreUnavailable(f"etcd {what}: timed out")
    if isinstance(exc, grpc.aio.AioRpcError):
        code = exc.code()
        detail = exc.details() or ""
        if code in TRANSIENT:
            return StoreUnavailable(f"etcd {what}: {code.name} {detail}".rstrip())
        return StoreError(f"etcd {what}: {code.name} {detail}".rstrip())
    if isinstance(exc, EtcdError):
        # etcd3aio wraps UNAVAILABLE as EtcdConnectionError and DEADLINE_EXCEEDED as
        # EtcdTransientError, after its retries; auth failures are not "unavailable".
        if isinstance(exc, EtcdConnectionError | EtcdTransientError):
            return StoreUnavailable(f"etcd {what}: {exc}")
        return StoreError(f"etcd {what}: {exc}")
    return StoreError(f"etcd {what}: {type(exc).__name__}: {exc}")


def rpc_detail(exc: BaseException) -> str:
    if isinstance(exc, grpc.aio.AioRpcError):
        return str(exc.details() or "")
    return ""


def rpc_code(exc: BaseException) -> Any:
    return exc.code() if isinstance(exc, grpc.aio.AioRpcError) else None


async def target(url: etcd_url.EtcdURL) -> str:
    """A gRPC target naming every member, for round-robin balancing."""
    eps = url.endpoints
    if len(eps) == 1 and eps[0].kind == "dns":
        return f"dns:///{eps[0]}"  # gRPC re-resolves it, every address is balanced
    if all(e.kind == "ipv4" for e in eps):
        return "ipv4:" + ",".join(str(e) for e in eps)
    if all(e.kind == "ipv6" for e in eps):
        return "ipv6:" + ",".join(str(e) for e in eps)
    # Several names (or a mix): resolve once now; gRPC's list targets take addresses.
    loop = asyncio.get_running_loop()
    v4: list[str] = []
    v6: list[str] = []
    for e in eps:
        if e.kind != "dns":
            (v4 if e.kind == "ipv4" else v6).append(str(e))
            continue
        try:
            infos = await loop.getaddrinfo(e.host, e.port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise StoreUnavailable(f"etcd endpoint {e}: cannot resolve: {exc}") from exc
        for family, _, _, _, addr in infos:
            if family == socket.AF_INET:
                v4.append(f"{addr[0]}:{e.port}")
            elif family == socket.AF_INET6:
                v6.append(f"[{addr[0]}]:{e.port}")
    if v4:
        return "ipv4:" + ",".join(dict.fromkeys(v4))
    return "ipv6:" + ",".join(dict.fromkeys(v6))


def read_pem(name: str, path: str | None) -> bytes | None:
    if path is None:
        return None
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise BadStoreURL(f"store URL option {name!r}: cannot read {path!r}: {exc}") from exc


async def open_channel(url: etcd_url.EtcdURL) -> Any:
    """A grpc.aio channel to every member named by `url` (TLS when it asks for it)."""
    cacert = read_pem("cacert", url.cacert)
    cert = read_pem("cert", url.cert)
    key = read_pem("key", url.key)
    where = await target(url)
    if not url.tls:
        return grpc.aio.insecure_channel(where, options=CHANNEL_OPTIONS)
    creds = grpc.ssl_channel_credentials(
        root_certificates=cacert, private_key=key, certificate_chain=cert
    )
    # gRPC cannot derive a host name from an address-list target: name the one the
    # members' certificates carry (default: the first host of the URL).
    name = url.servername or url.endpoints[0].host
    options = [*CHANNEL_OPTIONS, ("grpc.ssl_target_name_override", name)]
    return grpc.aio.secure_channel(where, creds, options=options)
