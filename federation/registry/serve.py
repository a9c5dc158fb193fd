"""`meshfed serve`: the registry process (REST API + gRPC control plane on one store).

Why this module exists: it is the composition of the registry's parts (store,
trust, tokens, API, control plane) and the only place that deals with the
process's life: first-start bootstrap (federation root, generated or adopted
from `--root-ca`; admin token written 0600 and only its path printed, or, with
`--admin-token-file`, the given token stored as the `admin` role), the key
passphrase, and draining on SIGTERM (uvicorn's own signal handling: stop
accepting, finish in-flight requests).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import uvicorn
from prometheus_client import CollectorRegistry

from federation.api import create_app
from federation.controlplane.server import ControlPlane
from federation.controlplane.server import start as start_grpc
from federation.controlplane.settings import DEFAULT_LEASE_TTL, Settings
from federation.registry.auth import Bearer, TokenService
from federation.registry.root_ca import adopt_root, load_root
from federation.registry.service import Registry
from federation.registry.timing import TimedBackend
from federation.registry.trust import TrustService
from federation.store import Store, open_backend
from trust_bundle import PassphraseProtector
from trust_bundle.storage import write_file

log = logging.getLogger("meshfed.serve")

PASSPHRASE_ENV = "MESHFED_KEY_PASSPHRASE"
PASSPHRASE_FILE = "key.passphrase"
TOKEN_FILE = "admin.token"
# 32 random bytes, URL-safe text: well above trust_bundle's 16-byte minimum.
PASSPHRASE_BYTES = 32
# How long SIGTERM waits for in-flight requests before closing them; Kubernetes
# gives a pod 30 s (terminationGracePeriodSeconds), so drain well within it.
DRAIN_SECONDS = 20


@dataclass(frozen=True, slots=True)
class ServeConfig:
    store_url: str
    data_dir: Path
    api_host: str = "127.0.0.1"
    api_port: int = 9470
    grpc_host: str = "127.0.0.1"
    grpc_port: int = 9471
    # Extra DNS names / IPs in the control plane's certificate: the names agents and
    # gateways dial (a Kubernetes Service, a load balancer), checked by TLS.
    server_names: tuple[str, ...] = ()
    lease_ttl: float = DEFAULT_LEASE_TTL
    # A federation root made elsewhere (`meshfed install --store etcd`): DIR with
    # root.pem and root-key.pem, adopted on first start (federation/registry/root_ca.py).
    root_ca: Path | None = None
    # A token made elsewhere (`meshfed install`'s Secret `meshfed-admin-token`): stored
    # as an admin token at every start, instead of writing <data-dir>/admin.token.
    admin_token: Bearer | None = field(default=None, repr=False)


def load_protector(data_dir: Path) -> PassphraseProtector:
    """The CA key passphrase: $MESHFED_KEY_PASSPHRASE, else <data-dir>/key.passphrase,
    created 0600 with random content on first start (O_EXCL: two first starts agree)."""
    if PASSPHRASE_ENV in os.environ:
        return PassphraseProtector.from_env(PASSPHRASE_ENV)
    path = data_dir / PASSPHRASE_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return PassphraseProtector.from_file(path)
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_urlsafe(PASSPHRASE_BYTES) + "\n")
    return PassphraseProtector.from_file(path)


async def open_registry(
    url: str, protector: PassphraseProtector, metrics: CollectorRegistry
) -> Registry:
    backend = await open_backend(url)
    # Agents' records are held under leases this process now keeps alive: they must
    # not expire because the registry was down, only if their agent does not come
    # back within one TTL (a restarted agent re-reports within a few seconds).
    renewed = await backend.lease_renew_all()
    if renewed:
        log.info("renewed %d agent leases for one TTL after start", renewed)
    store = Store(TimedBackend(backend, metrics))
    return Registry(store, TrustService(store, protector), TokenService(store))


async def bootstrap(registry: Registry, data_dir: Path, now: datetime) -> Path | None:
    """First start: the federation root and, on an empty store, the admin token file."""
    await registry.trust.ensure_root(now)
    return await bootstrap_admin_file(registry, data_dir, now)


async def bootstrap_admin_file(registry: Registry, data_dir: Path, now: datetime) -> Path | None:
    """On an empty store, an admin token written to <data-dir>/admin.token (0600)."""
    bearer = await registry.bootstrap_admin(now)
    path = data_dir / TOKEN_FILE
    if bearer is None:
        return path if path.exists() else None
    write_file(path, (bearer + "\n").encode(), secret=True)
    return path


class DrainingServer(uvicorn.Server):
    """uvicorn, except that a drained shutdown exits 0.

    uvicorn catches SIGTERM/SIGINT, drains, then re-raises the signal so the
    process dies "by signal" (exit status -15). A registry that drained cleanly
    on SIGTERM has done its job, so it should exit 0 like any service stopped by
    its supervisor; the signals it caught stay visible in `caught`.
    """

    caught: tuple[int, ...] = ()

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        with super().capture_signals():
            try:
                yield
            finally:
                self.caught = tuple(self._captured_signals)
                self._captured_signals.clear()


async def start_control_plane(registry: Registry, config: ServeConfig) -> ControlPlane:
    """The gRPC control plane next to the REST API, on the same store and trust."""
    settings = Settings(
        lease_ttl=config.lease_ttl,
        server_names=("localhost", *config.server_names),
    )
    return await start_grpc(
        store=registry.store,
        trust=registry.trust,
        listen=f"{config.grpc_host}:{config.grpc_port}",
        settings=settings,
    )


async def serve(config: ServeConfig, say: Callable[[str], None] = print) -> int:
    """Run until SIGTERM/SIGINT; returns the exit code."""
    config.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    started = datetime.now(UTC)
    # Read and check the given root before touching the store: a bad file fails fast.
    root = load_root(config.root_ca, started) if config.root_ca is not None else None
    metrics = CollectorRegistry()
    protector = load_protector(config.data_dir)
    registry = await open_registry(config.store_url, protector, metrics)
    control_plane = None
    try:
        if root is not None:  # before bootstrap, so ensure_root finds it and keeps it
            adopted = await adopt_root(registry.store, protector, root)
            if adopted.action == "superseded":
                say(f"federation root {adopted.fingerprint}: kept; --root-ca's root was "
                    "retired by a rotation")  # fmt: skip
            else:
                say(f"federation root {adopted.fingerprint}: {adopted.action} (--root-ca)")
        await registry.trust.ensure_root(started)
        if config.admin_token is not None:
            bearer = config.admin_token
            action = await registry.tokens.ensure_token(bearer, "admin", "meshfed-serve", started)
            say(f"admin token {bearer.name}: {action} (--admin-token-file)")
        else:
            token_path = await bootstrap_admin_file(registry, config.data_dir, started)
            if token_path is not None:
                say(f"admin token: {token_path}")
        app = create_app(registry, metrics_registry=metrics)
        server = DrainingServer(
            uvicorn.Config(
                app,
                host=config.api_host,
                port=config.api_port,
                log_level="info",
                access_log=False,
                timeout_graceful_shutdown=DRAIN_SECONDS,
                lifespan="off",
            )
        )
        control_plane = await start_control_plane(registry, config)
        say(f"REST API on http://{config.api_host}:{config.api_port}/api/v1")
        await server.serve()
        return 0 if server.started else 1
    finally:
        if control_plane is not None:
            await control_plane.stop()
        await registry.store.close()


def run(config: ServeConfig) -> int:
    return asyncio.run(serve(config))
