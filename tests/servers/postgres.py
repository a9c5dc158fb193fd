"""A real, throwaway PostgreSQL server for tests.

`PostgresServer` runs `initdb` into a fresh temporary directory (trust auth, no
fsync), starts the server with `pg_ctl` listening on 127.0.0.1 at a free port with
its unix socket inside that directory, and hands out one database per caller via
`create_database(name)`.

PostgreSQL refuses to run as root. CI (and these dev machines) run the tests as
root, so when the effective uid is 0 the server's processes run as an unprivileged
user instead: `postgres` if the machine has one (Debian's package creates it),
otherwise one is created with `useradd`, and `nobody` is the last resort.

Binaries are looked up on PATH, in /usr/local/bin, /usr/local/pgsql/bin and in
Debian's /usr/lib/postgresql/<version>/bin (newest version first). If none is
found the server fails to start with a message saying what to install: the store
contract suite must not silently skip PostgreSQL.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

SUPERUSER = "postgres"  # the database role initdb creates (independent of the OS user)
_DB_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class PostgresNotFound(RuntimeError):
    """No PostgreSQL server binaries on this machine."""


def find_binary(name: str) -> str:
    """Absolute path of a PostgreSQL binary, or PostgresNotFound naming what to install."""
    candidates: list[str] = []
    found = shutil.which(name)
    if found:
        candidates.append(found)
    candidates.append(f"/usr/local/bin/{name}")
    candidates.append(f"/usr/local/pgsql/bin/{name}")

    def version(path: str) -> tuple[int, ...]:
        m = re.search(r"/postgresql/(\d+)(?:\.(\d+))?/bin/", path)
        return tuple(int(g) for g in m.groups() if g) if m else (0,)

    candidates += sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=version, reverse=True)
    for path in candidates:
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    raise PostgresNotFound(
        f"PostgreSQL binary {name!r} not found on PATH, in /usr/local/bin or in "
        "/usr/lib/postgresql/*/bin. Install the server (Debian: `apt-get install -y "
        "postgresql`); the store contract suite needs a real PostgreSQL."
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _unprivileged_user() -> pwd.struct_passwd:
    """The OS user to run PostgreSQL as when the tests run as root."""
    with contextlib.suppress(KeyError):
        return pwd.getpwnam("postgres")
    useradd = shutil.which("useradd")
    if useradd:
        subprocess.run(
            [useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "postgres"],
            check=False,
            capture_output=True,
        )
        with contextlib.suppress(KeyError):
            return pwd.getpwnam("postgres")
    return pwd.getpwnam("nobody")


def _traversable_tmp() -> str:
    """A temp base directory every user can traverse (the server runs as another user)."""
    base = Path(tempfile.gettempdir()).resolve()
    for part in (base, *base.parents):
        if not os.stat(part).st_mode & 0o001:
            return "/tmp"
    return str(base)


class PostgresServer:
    """One PostgreSQL cluster in a temporary directory; `start()`, then `stop()`."""

    def __init__(self, *, start_timeout: float = 30.0, max_connections: int = 300) -> None:
        self.start_timeout = start_timeout
        self.max_connections = max_connections
        self.host = "127.0.0.1"
        self.port = 0
        self.base: Path | None = None
        self._run_as: pwd.struct_passwd | None = None
        self._started = False

    # -- paths -----------------------------------------------------------------

    @property
    def datadir(self) -> Path:
        assert self.base is not None, "server not started"
        return self.base / "data"

    @property
    def socket_dir(self) -> Path:
        assert self.base is not None, "server not started"
        return self.base / "sock"

    @property
    def logfile(self) -> Path:
        assert self.base is not None, "server not started"
        return self.base / "postgres.log"

    # -- lifecycle ---------------------------------------------------------------

    def _run(self, argv: list[str], *, timeout: float) -> subprocess.CompletedProcess[str]:
        kwargs: dict[str, Any] = {}
        if self._run_as is not None:
            kwargs.update(user=self._run_as.pw_uid, group=self._run_as.pw_gid, extra_groups=[])
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        env["HOME"] = str(self.base)
        return subprocess.run(
            argv,
            cwd=self.base,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            **kwargs,
        )

    def _check(self, proc: subprocess.CompletedProcess[str], what: str) -> None:
        if proc.returncode != 0:
            log = ""
            with contextlib.suppress(OSError):
                log = self.logfile.read_text(errors="replace")[-4000:]
            raise RuntimeError(
                f"PostgreSQL {what} failed (exit {proc.returncode}):\n"
                f"stdout: {proc.stdout}\nstderr: {proc.stderr}\nserver log tail:\n{log}"
            )

    def start(self) -> PostgresServer:
        initdb = find_binary("initdb")
        pg_ctl = find_binary("pg_ctl")
        find_binary("postgres")  # pg_ctl starts the one next to it; fail early if absent
        self.base = Path(tempfile.mkdtemp(prefix="meshfed-pg-", dir=_traversable_tmp()))
        self.socket_dir.mkdir()
        if os.geteuid() == 0:
            self._run_as = _unprivileged_user()
            for path in (self.base, self.socket_dir):
                os.chown(path, self._run_as.pw_uid, self._run_as.pw_gid)
        proc = self._run(
            [
                initdb,
                "--pgdata",
                str(self.datadir),
                "--username",
                SUPERUSER,
                "--auth",
                "trust",
                "--encoding",
                "UTF8",
                "--locale",
                "C",
                "--no-sync",
            ],
            timeout=120,
        )
        self._check(proc, "initdb")
        last_error: Exception | None = None
        for _ in range(3):  # the free port may be taken between probing and binding
            self.port = free_port()
            options = " ".join(
                [
                    f"-p {self.port}",
                    f"-k {self.socket_dir}",
                    "-c listen_addresses=127.0.0.1",
                    "-c fsync=off",
                    "-c synchronous_commit=off",
                    "-c full_page_writes=off",
                    f"-c max_connections={self.max_connections}",
                    "-c shared_buffers=32MB",
                ]
            )
            proc = self._run(
                [
                    pg_ctl,
                    "start",
                    "--pgdata",
                    str(self.datadir),
                    "--log",
                    str(self.logfile),
                    "--wait",
                    "--timeout",
                    str(int(self.start_timeout)),
                    "--options",
                    options,
                ],
                timeout=self.start_timeout + 10,
            )
            try:
                self._check(proc, "start")
            except RuntimeError as exc:
                last_error = exc
                continue
            self._started = True
            atexit.register(self.stop)  # no orphaned server if the session dies uncleanly
            self._wait_ready()
            return self
        assert last_error is not None
        self.stop()
        raise last_error

    def _wait_ready(self) -> None:
        import psycopg

        deadline = time.monotonic() + self.start_timeout
        while True:
            try:
                with psycopg.connect(self.dsn("postgres"), connect_timeout=2) as conn:
                    conn.execute("SELECT 1")
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        if self.base is None:
            return
        if self._started:
            self._run(
                [
                    find_binary("pg_ctl"),
                    "stop",
                    "--pgdata",
                    str(self.datadir),
                    "--mode",
                    "immediate",
                    "--wait",
                ],
                timeout=60,
            )
            self._started = False
            atexit.unregister(self.stop)
        shutil.rmtree(self.base, ignore_errors=True)
        self.base = None

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- databases ---------------------------------------------------------------

    def dsn(self, database: str) -> str:
        """A libpq connection string (for psycopg directly)."""
        return f"host={self.host} port={self.port} user={SUPERUSER} dbname={database}"

    def url(self, database: str) -> str:
        """A SQLAlchemy URL for `database` (psycopg 3 driver)."""
        return f"postgresql+psycopg://{SUPERUSER}@{self.host}:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """Create an empty database and return its `postgresql+psycopg://` URL."""
        import psycopg

        if not _DB_NAME.match(name):
            raise ValueError(f"database name {name!r}: use [a-z_][a-z0-9_]*, at most 63 chars")
        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, name: str) -> None:
        import psycopg

        if not _DB_NAME.match(name):
            raise ValueError(f"database name {name!r}: use [a-z_][a-z0-9_]*, at most 63 chars")
        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
