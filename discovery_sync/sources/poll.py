"""The static source's shell: re-read the YAML file when it changes.

Polls the file's (mtime, size, inode) rather than using inotify, so it also sees
an editor's rename-into-place and works on any filesystem. A file that fails to
parse is logged with the field the parser named, and the last good content
stays exported: a typo must not withdraw a service from the clusterset.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime

from discovery_sync.errors import SourceError
from discovery_sync.sources.static import read_static
from discovery_sync.types import LocalService
from federation.model import ServiceKey

log = logging.getLogger(__name__)

POLL_INTERVAL = 1.0  # seconds; the gateway's route file is polled every 2 s


def file_stamp(path: str) -> tuple[float, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime, st.st_size, st.st_ino)


async def watch_static(
    path: str,
    on_change: Callable[[Mapping[ServiceKey, LocalService]], Awaitable[None]],
    *,
    cluster: str,
    default_zone: str,
    interval: float = POLL_INTERVAL,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> None:
    """Call `on_change` with the file's services at start and after every change."""
    seen: object = object()
    first_seen: dict[ServiceKey, datetime] = {}
    current: Mapping[ServiceKey, LocalService] | None = None
    while True:
        stamp = file_stamp(path)
        if stamp != seen:
            seen = stamp
            try:
                services = read_static(
                    path,
                    cluster=cluster,
                    default_zone=default_zone,
                    now=clock(),
                    first_seen=first_seen,
                )
            except SourceError as err:
                log.error("static source not reloaded: %s", err)
            else:
                for key, svc in services.items():
                    first_seen.setdefault(key, svc.export.created)
                if services != current:
                    current = services
                    await on_change(services)
        await asyncio.sleep(interval)
